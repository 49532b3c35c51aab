// The Chat panel: the live conversation (joined with deltas: each token arrives as a small `delta`
// event, whole items only on create and status changes), stop and regenerate, copy, the reply's
// usage line and the export buttons. The sidebar is conversations.js, the model and settings
// settings.js, a reply's tool calls tool-calls.js.
//
// The conversation's stream holds the messages of every branch (edits and regenerations add siblings);
// the page shows the active branch only, as the server names it in its `active-branch` event, so a
// switch in one tab shows in every other. Every message keeps its element; those off the branch are
// hidden, so a switch moves elements instead of rendering replies again.
"use strict";
(function (global) {
  const FINISHED = new Set(["completed", "error", "stopped"]);
  const RENDER_LOG = 20000;   // render timings kept for the browser test (a ring, so memory stays flat)
  const { isToolCall, ReplyCalls, ReplyBody } = global.StreamchatToolCalls;
  const { usageLine, copyText, downloadExport } = global.ChatTools;

  class Chat {
    constructor(app) {
      this.app = app;
      this.$ = (id) => document.getElementById(id);
      this.conversationId = decodeURIComponent(location.hash.replace(/^#/, "")) || null;
      this.items = new Map();        // messages and tool calls, by id
      this.calls = new ReplyCalls();  // each reply's tool calls (items too, outside the tree)
      this.views = new Map();        // message id -> ReplyBody of its body
      this.pending = new Set();
      this.jumpTo = null;            // a message to scroll to once the conversation has arrived
      this.unsubscribe = null;
      this.renderTimes = [];         // {id, chars, ms, frameMs}: ms is the Markdown update alone
      this.tree = new MessageTree([]);
      this.path = [];                // the active branch, root first (ids of messages maybe not arrived yet)
      this.layoutPending = false;
      this.branches = new BranchControls(this);
      this.settings = new SettingsPanel(app);
      app.showError = (text) => this.showError(text);
      this.list = new ConversationList(app, (id, messageId) => this.open(id, messageId));
      this.list.onTitle = () => this.showHead();
      this.list.setActive(this.conversationId);
      this.$("composer").addEventListener("submit", (e) => this.submit(e));
      this.$("input").addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); this.$("composer").requestSubmit(); }
      });
      this.$("new-chat").addEventListener("click", () => this.open(null));
      this.$("messages").addEventListener("click", (event) => this.onAction(event));
      this.$("conversation-head").addEventListener("click", (event) => {
        const button = event.target.closest("button[data-export]");
        if (button) this.exportAs(button);
      });
      window.addEventListener("hashchange", () => {
        const id = decodeURIComponent(location.hash.replace(/^#/, "")) || null;
        if (id !== this.conversationId) this.open(id);
      });
      this.renderAll();
      this.showHead();
      if (this.conversationId) this.watch(this.conversationId);
      this.settings.show(this.conversationId);
      this.loadConversations();
    }

    showError(text) { this.$("error").hidden = !text; this.$("error").textContent = text || ""; }

    async loadConversations() {
      try { await this.list.load(null); } catch (error) { this.showError(error.message); }
    }

    showHead() {
      this.$("conversation-head").hidden = !this.conversationId;
      this.$("conversation-title").textContent = this.conversationId ? (this.list.title(this.conversationId) || "Conversation") : "";
    }

    open(conversationId, messageId) {
      this.jumpTo = messageId || null;
      if (conversationId && conversationId === this.conversationId) { this.reveal(); return; }
      this.conversationId = conversationId;
      this.items = new Map();
      this.calls.reset([]);
      this.tree = new MessageTree([]);
      this.path = [];
      history.replaceState(null, "", conversationId ? "#" + encodeURIComponent(conversationId) : location.pathname);
      this.renderAll();
      this.showHead();
      this.list.setActive(conversationId);
      if (this.unsubscribe) { this.unsubscribe(); this.unsubscribe = null; }
      if (conversationId) this.watch(conversationId);
      this.settings.show(conversationId);
      this.$("input").focus();
    }

    // Scroll to the message a search result named, and mark it for a moment; one on another branch
    // makes that branch the active one first.
    async reveal() {
      const target = this.jumpTo && document.getElementById("m-" + this.jumpTo);
      if (!target) return;
      this.jumpTo = null;
      if (target.hidden) {
        await this.branches.activate(target.dataset.id);
        this.layout();
      }
      target.scrollIntoView({ block: "center" });
      target.classList.add("found");
      setTimeout(() => target.classList.remove("found"), 2500);
    }

    watch(conversationId) {
      this.unsubscribe = this.app.live.subscribe("conversation", conversationId, (frame) => this.onFrame(frame), { delta: true });
    }

    onFrame(frame) {
      if (frame.groupId !== this.conversationId) return;
      const event = frame.event;
      if (event.type === "sync") {
        this.items = new Map((event.data || []).map((item) => [item.id, item]));
        this.calls.reset(this.items.values());
        this.tree = new MessageTree(this.items.values());
        // Until the server's `active-branch` event (it follows the sync): the branch shown before a
        // reconnect, or the latest message's.
        if (!this.path.length || !this.path.every((id) => this.tree.has(id))) this.path = this.tree.latestPath();
        this.renderAll();
      } else if (event.type === "create" || event.type === "update") {
        const known = this.items.get(event.data.id);
        if (known && event.data.seq < known.seq) return;
        this.items.set(event.data.id, event.data);
        if (isToolCall(event.data)) {   // shown in its reply, which renders again
          this.calls.put(event.data);
          this.schedule(event.data.parentId);
          return;
        }
        if (!known) {
          // A new message: sent, edited or regenerated, it is on the branch made active (the server's
          // event confirms it), so it shows at once.
          this.tree = new MessageTree(this.items.values());
          this.showBranch(this.tree.pathTo(event.data.id));
        }
        this.schedule(event.data.id);
        if (event.data.from === "assistant" && FINISHED.has(event.data.status)) this.loadConversations();
      } else if (event.type === "delete") {
        const known = this.items.get(event.data.id);
        this.items.delete(event.data.id);
        if (known && isToolCall(known)) { this.calls.remove(known); this.schedule(known.parentId); return; }
        this.views.delete(event.data.id);
        this.tree = new MessageTree(this.items.values());
        document.getElementById("m-" + event.data.id)?.remove();
        this.scheduleLayout();
      } else if (event.type === "event" && event.event.type === "active-branch") {
        this.showBranch(event.event.data.path || []);
      } else if (event.type === "event" && event.event.type === "delta") {
        const delta = event.event.data;
        const item = this.items.get(delta.id);
        if (!item || delta.seq <= item.seq) return;   // unknown yet, or already contained: never twice
        const field = delta.field || "message";       // a tool call's arguments name their field
        item[field] = (item[field] || "") + delta.delta;
        item.seq = delta.seq;
        this.schedule(isToolCall(item) ? item.parentId : delta.id);
      }
    }

    // Render at most once per animation frame per message, however fast tokens arrive.
    schedule(id) {
      if (this.pending.has(id)) return;
      this.pending.add(id);
      requestAnimationFrame(() => {
        this.pending.delete(id);
        const item = this.items.get(id);
        if (item && !isToolCall(item)) this.renderItem(item);
      });
    }

    showBranch(path) {
      this.path = path;
      this.scheduleLayout();
    }

    // Order, show and hide the messages for the active branch once per frame, after the renders.
    scheduleLayout() {
      if (this.layoutPending) return;
      this.layoutPending = true;
      requestAnimationFrame(() => { this.layoutPending = false; this.layout(); });
    }

    layout() {
      const box = this.$("messages");
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
      const shown = new Set(this.path);
      let previous = null;
      for (const id of this.path) {
        const item = this.items.get(id);
        if (!item) continue;       // announced before its item arrived: placed when it does
        const el = document.getElementById("m-" + id) || this.renderItem(item);
        el.hidden = false;
        if (previous ? previous.nextElementSibling !== el : box.firstElementChild !== el) {
          if (previous) previous.after(el); else box.prepend(el);
        }
        previous = el;
      }
      for (const el of box.querySelectorAll("article.message")) {
        if (!shown.has(el.dataset.id)) el.hidden = true;
        this.branches.decorate(el, this.items.get(el.dataset.id));
      }
      if (atBottom) box.scrollTop = box.scrollHeight;
      if (this.jumpTo) this.reveal();
    }

    // The branch's last message: where a new message (Continue) goes.
    get leaf() { return this.path.length ? this.path[this.path.length - 1] : null; }

    element(item) {
      let el = document.getElementById("m-" + item.id);
      if (!el) {
        el = document.createElement("article");
        el.id = "m-" + item.id;
        el.dataset.id = item.id;
        el.hidden = true;          // until the layout places it (on the branch or not)
        el.innerHTML = '<div class="meta"><span class="who"></span><span class="model-name"></span><span class="actions">'
          + '<span class="versions" hidden></span>'
          + '<button type="button" class="link copy" data-copy="message" aria-label="Copy message" data-label="Copy"></button>'
          + '<span class="control"></span></span></div><div class="body"></div>'
          + '<div class="usage" hidden></div>';
        this.$("messages").appendChild(el);
        this.scheduleLayout();
      }
      return el;
    }

    renderItem(item) {
      const started = performance.now();
      const box = this.$("messages");
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
      box.querySelector(".empty")?.remove();
      const el = this.element(item);
      el.className = `message ${item.from} ${item.status}`;
      el.dataset.status = item.status;
      const when = item.timestamp ? new Date(item.timestamp).toLocaleTimeString() : "";
      const label = item.status === "completed" || item.from === "user" ? "" : ` · ${item.status}`;
      el.querySelector(".who").textContent = `${item.from === "user" ? "You" : "Assistant"} ${when}${label}`;
      const modelName = el.querySelector(".model-name");
      modelName.textContent = item.model || "";
      modelName.title = item.model ? "the model that wrote this reply" : "";
      const control = el.querySelector(".control");
      const action = item.from === "user" ? "edit" : FINISHED.has(item.status) ? "regenerate" : "stop";
      if (control.dataset.action !== action) {
        control.dataset.action = action;
        control.innerHTML = action === "edit"
          ? '<button type="button" class="link" data-action="edit" aria-label="Edit message" data-label="Edit"></button>'
          : `<button type="button" class="link" data-action="${action}">${action === "stop" ? "■ Stop" : "↻ Regenerate"}</button>`;
      }
      const body = el.querySelector(".body");
      let markdownMs = 0;
      if (item.from === "user") body.textContent = item.message;
      else {
        let view = this.views.get(item.id);
        if (!view || view.element !== body) this.views.set(item.id, view = new ReplyBody(body));
        const before = performance.now();
        view.update(item.message, FINISHED.has(item.status), this.calls.of(item.id));
        markdownMs = performance.now() - before;
      }
      let failure = el.querySelector(".failure");
      if (item.error && !failure) {
        failure = document.createElement("div");
        failure.className = "failure";
        body.after(failure);
      }
      if (item.error) failure.textContent = "⚠ " + item.error; else failure?.remove();
      const usage = el.querySelector(".usage");
      const line = FINISHED.has(item.status) ? usageLine(item.usage) : null;
      usage.hidden = !line;
      usage.textContent = line ? line.text : "";
      usage.title = line ? line.detail : "";
      this.branches.decorate(el, item);
      if (atBottom) box.scrollTop = box.scrollHeight;
      if (item.from === "assistant") this.logRender(item, markdownMs, performance.now() - started);
      return el;
    }

    logRender(item, ms, frameMs) {
      if (this.renderTimes.length >= RENDER_LOG) this.renderTimes.splice(0, RENDER_LOG / 2);
      this.renderTimes.push({ id: item.id, chars: item.message.length, ms, frameMs });
    }

    renderAll() {
      const box = this.$("messages");
      box.replaceChildren();
      this.views.clear();
      if (!this.items.size) {
        const p = document.createElement("p");
        p.className = "empty";
        p.textContent = this.conversationId ? "No messages yet." : "Start a conversation below.";
        box.appendChild(p);
      }
      for (const item of this.items.values()) if (!isToolCall(item)) this.renderItem(item);
      // In the next frame: after a sync, the server's `active-branch` event comes next, so a
      // conversation opens on its active branch, not the latest one for a moment.
      this.scheduleLayout();
    }

    async onAction(event) {
      const copy = event.target.closest("button[data-copy]");
      if (copy) { this.copy(copy); return; }
      const button = event.target.closest("button[data-action]");
      if (!button || this.branches.handle(button)) return;
      const id = button.closest("[data-id]").dataset.id;   // a message, or a tool call in it (approve, deny)
      button.disabled = true;
      try {
        await this.app.api(`/api/conversations/${encodeURIComponent(this.conversationId)}/messages/${encodeURIComponent(id)}/${button.dataset.action}`, { method: "POST" });
      } catch (error) { this.showError(error.message); }
      finally { button.disabled = false; }
    }

    // A message's own text (its Markdown source), or one code block's code.
    async copy(button) {
      const text = button.dataset.copy === "code"
        ? button.closest(".code-block").querySelector("code").textContent
        : this.items.get(button.closest("article").dataset.id)?.message ?? "";
      try {
        await copyText(text);
        button.dataset.label = "Copied";
        button.classList.add("copied");
        setTimeout(() => { button.dataset.label = "Copy"; button.classList.remove("copied"); }, 1500);
      } catch (error) { this.showError(`Could not copy: ${error.message}`); }
    }

    async exportAs(button) {
      button.disabled = true;
      try { await downloadExport(this.app, this.conversationId, button.dataset.export); }
      catch (error) { this.showError(`Export failed: ${error.message}`); }
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
        const body = Object.assign({ message }, this.settings.chosen());
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
