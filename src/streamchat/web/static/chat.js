// The Chat panel: conversations, the live conversation (joined with deltas: each token arrives
// as a small `delta` event, whole items only on create and status changes), stop and regenerate.
"use strict";
(function (global) {
  const FINISHED = new Set(["completed", "error", "stopped"]);

  class Chat {
    constructor(app) {
      this.app = app;
      this.$ = (id) => document.getElementById(id);
      this.conversationId = decodeURIComponent(location.hash.replace(/^#/, "")) || null;
      this.items = new Map();
      this.pending = new Set();
      this.unsubscribe = null;
      this.$("composer").addEventListener("submit", (e) => this.submit(e));
      this.$("input").addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); this.$("composer").requestSubmit(); }
      });
      this.$("new-chat").addEventListener("click", () => this.open(null));
      this.$("messages").addEventListener("click", (event) => this.onAction(event));
      window.addEventListener("hashchange", () => {
        const id = decodeURIComponent(location.hash.replace(/^#/, "")) || null;
        if (id !== this.conversationId) this.open(id);
      });
      this.renderAll();
      if (this.conversationId) this.watch(this.conversationId);
      this.loadConversations();
    }

    showError(text) { this.$("error").hidden = !text; this.$("error").textContent = text || ""; }

    async loadConversations() {
      try {
        const { conversations } = await this.app.api("/api/conversations");
        this.$("conversations").replaceChildren(...conversations.map((c) => {
          const li = document.createElement("li");
          li.textContent = c.title || c.conversationId;
          li.title = c.title;
          li.dataset.id = c.conversationId;
          li.classList.toggle("active", c.conversationId === this.conversationId);
          li.addEventListener("click", () => this.open(c.conversationId));
          return li;
        }));
      } catch (error) { this.showError(error.message); }
    }

    open(conversationId) {
      this.conversationId = conversationId;
      this.items = new Map();
      history.replaceState(null, "", conversationId ? "#" + encodeURIComponent(conversationId) : location.pathname);
      this.renderAll();
      for (const li of this.$("conversations").children) li.classList.toggle("active", li.dataset.id === conversationId);
      if (this.unsubscribe) { this.unsubscribe(); this.unsubscribe = null; }
      if (conversationId) this.watch(conversationId);
      this.$("input").focus();
    }

    watch(conversationId) {
      this.unsubscribe = this.app.live.subscribe("conversation", conversationId, (frame) => this.onFrame(frame), { delta: true });
    }

    onFrame(frame) {
      if (frame.groupId !== this.conversationId) return;
      const event = frame.event;
      if (event.type === "sync") {
        this.items = new Map((event.data || []).map((item) => [item.id, item]));
        this.renderAll();
      } else if (event.type === "create" || event.type === "update") {
        const known = this.items.get(event.data.id);
        if (known && event.data.seq < known.seq) return;
        this.items.set(event.data.id, event.data);
        this.schedule(event.data.id);
        if (event.data.from === "assistant" && FINISHED.has(event.data.status)) this.loadConversations();
      } else if (event.type === "delete") {
        this.items.delete(event.data.id);
        document.getElementById("m-" + event.data.id)?.remove();
      } else if (event.type === "event" && event.event.type === "delta") {
        const delta = event.event.data;
        const item = this.items.get(delta.id);
        if (!item || delta.seq <= item.seq) return;   // unknown yet, or already contained: never twice
        item.message += delta.delta;
        item.seq = delta.seq;
        this.schedule(delta.id);
      }
    }

    // Render at most once per animation frame per message, however fast tokens arrive.
    schedule(id) {
      if (this.pending.has(id)) return;
      this.pending.add(id);
      requestAnimationFrame(() => {
        this.pending.delete(id);
        const item = this.items.get(id);
        if (item) this.renderItem(item);
      });
    }

    element(item) {
      let el = document.getElementById("m-" + item.id);
      if (!el) {
        el = document.createElement("article");
        el.id = "m-" + item.id;
        el.dataset.id = item.id;
        el.innerHTML = '<div class="meta"><span class="who"></span><span class="actions"></span></div><div class="body"></div>';
        this.$("messages").appendChild(el);
      }
      return el;
    }

    renderItem(item) {
      const box = this.$("messages");
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
      box.querySelector(".empty")?.remove();
      const el = this.element(item);
      el.className = `message ${item.from} ${item.status}`;
      el.dataset.status = item.status;
      const when = item.timestamp ? new Date(item.timestamp).toLocaleTimeString() : "";
      const label = item.status === "completed" || item.from === "user" ? "" : ` · ${item.status}`;
      el.querySelector(".who").textContent = `${item.from === "user" ? "You" : "Assistant"} ${when}${label}`;
      const actions = el.querySelector(".actions");
      if (item.from === "assistant") {
        const action = FINISHED.has(item.status) ? "regenerate" : "stop";
        if (actions.dataset.action !== action) {
          actions.dataset.action = action;
          actions.innerHTML = `<button type="button" class="link" data-action="${action}">${action === "stop" ? "■ Stop" : "↻ Regenerate"}</button>`;
        }
      }
      const body = el.querySelector(".body");
      if (item.from === "user") body.textContent = item.message;
      else body.innerHTML = global.renderMarkdown(item.message);
      if (item.error) {
        const failure = document.createElement("div");
        failure.className = "failure";
        failure.textContent = "⚠ " + item.error;
        body.appendChild(failure);
      }
      if (atBottom) box.scrollTop = box.scrollHeight;
    }

    renderAll() {
      const box = this.$("messages");
      box.replaceChildren();
      if (!this.items.size) {
        const p = document.createElement("p");
        p.className = "empty";
        p.textContent = this.conversationId ? "No messages yet." : "Start a conversation below.";
        box.appendChild(p);
      }
      for (const item of this.items.values()) this.renderItem(item);
    }

    async onAction(event) {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      const id = button.closest("article").dataset.id;
      button.disabled = true;
      try {
        await this.app.api(`/api/conversations/${encodeURIComponent(this.conversationId)}/messages/${encodeURIComponent(id)}/${button.dataset.action}`, { method: "POST" });
      } catch (error) { this.showError(error.message); }
      finally { button.disabled = false; }
    }

    async submit(event) {
      event.preventDefault();
      const input = this.$("input");
      const message = input.value;
      if (!message.trim()) return;
      this.$("send").disabled = true;
      this.showError("");
      try {
        const body = { message };
        if (this.conversationId) body.conversationId = this.conversationId;
        const accepted = await this.app.api("/chat", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        input.value = "";
        if (accepted.conversationId !== this.conversationId) this.open(accepted.conversationId);
        this.loadConversations();
      } catch (error) {
        this.showError(error.message);
      } finally {
        this.$("send").disabled = false;
      }
    }
  }

  global.Chat = Chat;
})(window);
