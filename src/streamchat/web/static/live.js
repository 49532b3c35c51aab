// One WebSocket to the server, speaking Motia's stream protocol, shared by every panel.
// Subscriptions survive reconnects: on open, every one is joined again and its handler gets
// a fresh `sync`, so a dropped connection resumes without duplicates.
"use strict";
(function (global) {
  class Live {
    constructor(tokenProvider) {
      this.tokenProvider = tokenProvider;
      this.subscriptions = new Map();   // key -> {join, handler}
      this.retry = 0;
      this.listeners = new Set();
      this.socket = null;
      this.online = false;
    }

    key(streamName, groupId, id) { return `${streamName}\u0000${groupId}\u0000${id || ""}`; }

    onStatus(listener) { this.listeners.add(listener); listener(this.online); }

    setOnline(online) { this.online = online; this.listeners.forEach((l) => l(online)); }

    connect() {
      if (this.socket) { this.socket.onclose = null; this.socket.close(); }
      const url = new URL("/", location.href);
      url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
      const token = this.tokenProvider();
      if (token) url.searchParams.set("authToken", token);
      const socket = new WebSocket(url.toString());
      this.socket = socket;
      socket.onopen = () => {
        this.retry = 0;
        this.setOnline(true);
        for (const sub of this.subscriptions.values()) this.send({ type: "join", data: sub.join });
      };
      socket.onmessage = (event) => this.dispatch(JSON.parse(event.data));
      socket.onclose = () => {
        this.socket = null;
        this.setOnline(false);
        const delay = Math.min(5000, 250 * 2 ** this.retry++);
        setTimeout(() => this.connect(), delay);
      };
    }

    send(frame) {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(frame));
    }

    subscribe(streamName, groupId, handler, options) {
      const join = { streamName, groupId, subscriptionId: crypto.randomUUID() };
      if (options && options.id) join.id = options.id;
      if (options && options.delta) join.delta = true;
      const key = this.key(streamName, groupId, join.id);
      this.unsubscribe(streamName, groupId, join.id);
      this.subscriptions.set(key, { join, handler });
      this.send({ type: "join", data: join });
      return () => this.unsubscribe(streamName, groupId, join.id);
    }

    unsubscribe(streamName, groupId, id) {
      const key = this.key(streamName, groupId, id);
      const sub = this.subscriptions.get(key);
      if (!sub) return;
      this.subscriptions.delete(key);
      this.send({ type: "leave", data: sub.join });
    }

    resync(streamName, groupId, id) {
      const sub = this.subscriptions.get(this.key(streamName, groupId, id));
      if (!sub) return;
      this.send({ type: "leave", data: sub.join });
      this.send({ type: "join", data: sub.join });
    }

    dispatch(frame) {
      if (!frame.streamName) return;
      const exact = this.subscriptions.get(this.key(frame.streamName, frame.groupId, frame.event.type === "sync" ? frame.id : undefined));
      const target = exact || this.subscriptions.get(this.key(frame.streamName, frame.groupId));
      if (target) target.handler(frame);
    }
  }

  global.Live = Live;
})(window);
