// The chat page: talks to the server over plain HTTP (POST /chat, GET /api/conversations)
// and watches the open conversation over the WebSocket stream protocol (join a group,
// receive `sync`, then `create`/`update`/`delete` frames). Reconnects with backoff and
// re-joins, so a dropped connection or a reload resumes from the server's current state.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = {
    conversationId: decodeURIComponent(location.hash.slice(1)) || null,
    items: new Map(),        // message id -> item, in conversation order
    socket: null,
    joined: null,            // {streamName, groupId, subscriptionId}
    retry: 0,
    key: localStorage.getItem("streamchat.key") || "",
  };

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (state.key) h.Authorization = "Bearer " + state.key;
    return h;
  }

  async function api(path, options) {
    const response = await fetch(path, Object.assign({}, options, { headers: headers(options && options.headers) }));
    if (response.status === 401) {
      const key = prompt("This server needs an API key:");
      if (key) { state.key = key.trim(); localStorage.setItem("streamchat.key", state.key); connect(true); return api(path, options); }
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || body.error || `HTTP ${response.status}`);
    return body;
  }

  function showError(text) {
    $("error").hidden = !text;
    $("error").textContent = text || "";
  }

  // ---- conversation list -------------------------------------------------------------
  async function loadConversations() {
    try {
      const { conversations } = await api("/api/conversations");
      const list = $("conversations");
      list.replaceChildren(...conversations.map((c) => {
        const li = document.createElement("li");
        li.textContent = c.title || c.conversationId;
        li.title = c.title;
        li.dataset.id = c.conversationId;
        li.classList.toggle("active", c.conversationId === state.conversationId);
        li.addEventListener("click", () => open(c.conversationId));
        return li;
      }));
    } catch (error) { showError(error.message); }
  }

  function markActive() {
    for (const li of $("conversations").children) li.classList.toggle("active", li.dataset.id === state.conversationId);
  }

  // ---- messages ----------------------------------------------------------------------
  function messageElement(item) {
    let el = document.getElementById("m-" + item.id);
    if (!el) {
      el = document.createElement("article");
      el.id = "m-" + item.id;
      el.innerHTML = '<div class="meta"></div><div class="body"></div>';
      $("messages").appendChild(el);
    }
    return el;
  }

  function renderItem(item) {
    const box = $("messages");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    box.querySelector(".empty")?.remove();
    const el = messageElement(item);
    el.className = `message ${item.from} ${item.status}`;
    el.dataset.status = item.status;
    const when = item.timestamp ? new Date(item.timestamp).toLocaleTimeString() : "";
    const label = item.status === "completed" || item.from === "user" ? "" : ` · ${item.status}`;
    el.querySelector(".meta").textContent = `${item.from === "user" ? "You" : "Assistant"} ${when}${label}`;
    const body = el.querySelector(".body");
    if (item.from === "user") body.textContent = item.message;
    else body.innerHTML = window.renderMarkdown(item.message);
    if (item.error) {
      const failure = document.createElement("div");
      failure.className = "failure";
      failure.textContent = "⚠ " + item.error;
      body.appendChild(failure);
    }
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  function renderAll() {
    const box = $("messages");
    box.replaceChildren();
    if (!state.items.size) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = state.conversationId ? "No messages yet." : "Start a conversation below.";
      box.appendChild(p);
    }
    for (const item of state.items.values()) renderItem(item);
  }

  // ---- live stream (Motia protocol) ----------------------------------------------------
  function socketUrl() {
    const url = new URL("/", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (state.key) url.searchParams.set("authToken", state.key);
    return url.toString();
  }

  function setConnection(online) {
    const el = $("connection");
    el.textContent = online ? "live" : "reconnecting…";
    el.className = "status " + (online ? "online" : "offline");
  }

  function connect(force) {
    if (state.socket && !force) return;
    if (state.socket) { state.socket.onclose = null; state.socket.close(); }
    const socket = new WebSocket(socketUrl());
    state.socket = socket;
    socket.onopen = () => { state.retry = 0; setConnection(true); if (state.conversationId) join(state.conversationId); };
    socket.onmessage = (event) => onFrame(JSON.parse(event.data));
    socket.onclose = () => {
      setConnection(false);
      state.socket = null;
      state.joined = null;
      const delay = Math.min(5000, 250 * 2 ** state.retry++);
      setTimeout(() => connect(), delay);
    };
  }

  function send(frame) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(frame));
  }

  function join(conversationId) {
    if (state.joined) send({ type: "leave", data: state.joined });
    state.joined = { streamName: "conversation", groupId: conversationId, subscriptionId: crypto.randomUUID() };
    send({ type: "join", data: state.joined });
  }

  function onFrame(frame) {
    if (frame.streamName !== "conversation" || frame.groupId !== state.conversationId) return;
    const event = frame.event;
    if (event.type === "sync" && !frame.id) {
      state.items = new Map(event.data.map((item) => [item.id, item]));
      renderAll();
    } else if (event.type === "create" || event.type === "update") {
      const known = state.items.get(event.data.id);
      if (known && known.seq && event.data.seq && event.data.seq < known.seq) return;
      state.items.set(event.data.id, event.data);
      renderItem(event.data);
      if (event.data.from === "assistant" && event.data.status !== "streaming" && event.data.status !== "created") loadConversations();
    } else if (event.type === "delete") {
      state.items.delete(event.data.id);
      document.getElementById("m-" + event.data.id)?.remove();
    }
  }

  // ---- actions -------------------------------------------------------------------------
  function open(conversationId) {
    state.conversationId = conversationId;
    state.items = new Map();
    history.replaceState(null, "", conversationId ? "#" + encodeURIComponent(conversationId) : location.pathname);
    renderAll();
    markActive();
    if (conversationId) join(conversationId);
    else if (state.joined) { send({ type: "leave", data: state.joined }); state.joined = null; }
    $("input").focus();
  }

  async function submit(event) {
    event.preventDefault();
    const input = $("input");
    const message = input.value;
    if (!message.trim()) return;
    $("send").disabled = true;
    showError("");
    try {
      const body = { message };
      if (state.conversationId) body.conversationId = state.conversationId;
      const accepted = await api("/chat", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      input.value = "";
      if (accepted.conversationId !== state.conversationId) open(accepted.conversationId);
      loadConversations();
    } catch (error) {
      showError(error.message);
    } finally {
      $("send").disabled = false;
    }
  }

  $("composer").addEventListener("submit", submit);
  $("input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("composer").requestSubmit(); }
  });
  $("new-chat").addEventListener("click", () => open(null));
  window.addEventListener("hashchange", () => {
    const id = decodeURIComponent(location.hash.slice(1)) || null;
    if (id !== state.conversationId) open(id);
  });

  renderAll();
  connect();
  loadConversations();
})();
