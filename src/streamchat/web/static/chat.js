// The Chat panel: the live conversation (joined with deltas: each token arrives as a small `delta`
// event, whole items only on create and status changes), stop and regenerate, copy, the reply's
// usage line and the export buttons. The sidebar is conversations.js.
"use strict";
(function (global) {
  const FINISHED = new Set(["completed", "error", "stopped"]);
  const RENDER_LOG = 20000;   // render timings kept for the browser test (a ring, so memory stays flat)
  const { MarkdownView } = global.StreamchatMarkdown;

  // "fake-model · 12 + 34 tokens · 1.2 s", or null when the reply carries no usage.
  function usageLine(usage) {
    if (!usage) return null;
    const parts = [String(usage.model || "").split("/").pop()];
    const { promptTokens: prompt, completionTokens: completion } = usage;
    if (prompt != null && completion != null) parts.push(`${prompt} + ${completion} tokens`);
    else if (completion != null) parts.push(`${completion} tokens`);
    if (usage.durationMs != null) parts.push(`${(usage.durationMs / 1000).toFixed(1)} s`);
    const detail = [prompt != null ? `${prompt} prompt tokens` : null, completion != null ? `${completion} reply tokens` : null,
      usage.timeToFirstTokenMs != null ? `first token after ${(usage.timeToFirstTokenMs / 1000).toFixed(2)} s` : null]
      .filter(Boolean).join(", ");
    return { text: parts.filter(Boolean).join(" · "), detail };
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return; } catch { /* fall back below */ }
    }
    // Plain http from another host has no Clipboard API: copy through a selected, invisible textarea.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.cssText = "position:fixed;top:0;left:0;opacity:0";
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    if (!copied) throw new Error("the browser refused to copy");
  }

  // The file name a Content-Disposition header gives (RFC 6266: filename* first), or null.
  function dispositionName(header) {
    if (!header) return null;
    const encoded = header.match(/filename\*\s*=\s*UTF-8''([^;]+)/i);
    if (encoded) { try { return decodeURIComponent(encoded[1].trim()); } catch { /* use the plain one */ } }
    const plain = header.match(/filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;]+)/i);
    return plain ? (plain[1] ?? plain[2]).trim() : null;
  }

  class Chat {
    constructor(app) {
      this.app = app;
      this.$ = (id) => document.getElementById(id);
      this.conversationId = decodeURIComponent(location.hash.replace(/^#/, "")) || null;
      this.items = new Map();
      this.views = new Map();        // message id -> MarkdownView of its body
      this.pending = new Set();
      this.jumpTo = null;            // a message to scroll to once the conversation has arrived
      this.unsubscribe = null;
      this.renderTimes = [];         // {id, chars, ms, frameMs}: ms is the Markdown update alone
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
      history.replaceState(null, "", conversationId ? "#" + encodeURIComponent(conversationId) : location.pathname);
      this.renderAll();
      this.showHead();
      this.list.setActive(conversationId);
      if (this.unsubscribe) { this.unsubscribe(); this.unsubscribe = null; }
      if (conversationId) this.watch(conversationId);
      this.$("input").focus();
    }

    // Scroll to the message a search result named, and mark it for a moment.
    reveal() {
      const target = this.jumpTo && document.getElementById("m-" + this.jumpTo);
      if (!target) return;
      this.jumpTo = null;
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
        this.renderAll();
        this.reveal();
      } else if (event.type === "create" || event.type === "update") {
        const known = this.items.get(event.data.id);
        if (known && event.data.seq < known.seq) return;
        this.items.set(event.data.id, event.data);
        this.schedule(event.data.id);
        if (event.data.from === "assistant" && FINISHED.has(event.data.status)) this.loadConversations();
      } else if (event.type === "delete") {
        this.items.delete(event.data.id);
        this.views.delete(event.data.id);
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
        el.innerHTML = '<div class="meta"><span class="who"></span><span class="actions">'
          + '<button type="button" class="link copy" data-copy="message" aria-label="Copy message" data-label="Copy"></button>'
          + '<span class="control"></span></span></div><div class="body"></div>'
          + '<div class="usage" hidden></div>';
        this.$("messages").appendChild(el);
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
      const control = el.querySelector(".control");
      if (item.from === "assistant") {
        const action = FINISHED.has(item.status) ? "regenerate" : "stop";
        if (control.dataset.action !== action) {
          control.dataset.action = action;
          control.innerHTML = `<button type="button" class="link" data-action="${action}">${action === "stop" ? "■ Stop" : "↻ Regenerate"}</button>`;
        }
      }
      const body = el.querySelector(".body");
      let markdownMs = 0;
      if (item.from === "user") body.textContent = item.message;
      else {
        let view = this.views.get(item.id);
        if (!view || view.element !== body) this.views.set(item.id, view = new MarkdownView(body));
        const before = performance.now();
        view.update(item.message, FINISHED.has(item.status));
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
      if (atBottom) box.scrollTop = box.scrollHeight;
      if (item.from === "assistant") this.logRender(item, markdownMs, performance.now() - started);
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
      for (const item of this.items.values()) this.renderItem(item);
    }

    async onAction(event) {
      const copy = event.target.closest("button[data-copy]");
      if (copy) { this.copy(copy); return; }
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      const id = button.closest("article").dataset.id;
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

    // Fetched with the API key (a plain link could not send it), then saved through a blob link.
    async exportAs(button) {
      const format = button.dataset.export;
      const id = this.conversationId;
      button.disabled = true;
      try {
        const response = await this.app.fetch(`/api/conversations/${encodeURIComponent(id)}/export?format=${format}`);
        if (!response.ok) {
          const body = await response.json().catch(() => ({}));
          throw new Error(body.detail || body.error || `HTTP ${response.status}`);
        }
        const blob = await response.blob();
        const name = dispositionName(response.headers.get("Content-Disposition")) || `conversation-${id}.${format === "json" ? "json" : "md"}`;
        const url = URL.createObjectURL(blob);
        const link = Object.assign(document.createElement("a"), { href: url, download: name, hidden: true });
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
      } catch (error) { this.showError(`Export failed: ${error.message}`); }
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
