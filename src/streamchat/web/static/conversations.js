// The sidebar: the caller's conversations (newest activity first, a page at a time), rename in place,
// delete after asking, and the search box, whose results show the words around the match and open
// the conversation at the matching message.
"use strict";
(function (global) {
  const SEARCH_DELAY_MS = 250;   // wait for a pause in typing: one request per word, not per key

  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    node.append(...children);
    return node;
  };

  // A small text button whose visible label is CSS-generated (data-label), so a list entry's or a
  // message's innerText stays its own text; aria-label names it for screen readers and tests.
  const iconButton = (action, label, name) =>
    el("button", { type: "button", class: "link", "data-row": action, "data-label": label, "aria-label": name });

  // `text` with every occurrence of the query's words in <mark>, built from text nodes (never HTML).
  function highlighted(text, query) {
    const words = query.split(/\s+/).filter((w) => w.length > 1).map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    if (!words.length) return [text];
    return text.split(new RegExp(`(${words.join("|")})`, "gi"))
      .map((part, i) => (i % 2 ? el("mark", {}, part) : part)).filter((part) => part !== "");
  }

  class ConversationList {
    constructor(app, open) {
      this.app = app;
      this.open = open;                 // open(conversationId, messageId?)
      this.$ = (id) => document.getElementById(id);
      this.titles = new Map();          // conversationId -> title, from every list and search answer
      this.activeId = null;
      this.nextCursor = null;
      this.searchSeq = 0;
      this.searchTimer = null;
      this.onTitle = () => {};
      this.$("conversations").addEventListener("click", (event) => this.onClick(event));
      this.$("conversations").addEventListener("keydown", (event) => {
        if (event.key === "Enter" && event.target.matches("li[data-id]")) this.open(event.target.dataset.id);
      });
      this.$("results").addEventListener("click", (event) => {
        const li = event.target.closest("li[data-id]");
        if (li) this.open(li.dataset.id, li.dataset.message || null);
      });
      this.$("more").addEventListener("click", () => this.load(this.nextCursor));
      const search = this.$("search");
      search.addEventListener("input", () => {
        clearTimeout(this.searchTimer);
        this.searchTimer = setTimeout(() => this.search(search.value), SEARCH_DELAY_MS);
      });
      search.addEventListener("keydown", (event) => {
        if (event.key === "Escape") { search.value = ""; this.search(""); }
        if (event.key === "Enter") { clearTimeout(this.searchTimer); this.search(search.value); }
      });
      // Another tab or device may have started, renamed or deleted conversations meanwhile.
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "visible") this.refresh();
      });
    }

    // The first page and the search again, unless a rename or a delete is open in the list.
    refresh() {
      if (this.$("conversations").querySelector(".editing, .confirming")) return;
      this.load(null).catch(() => {});  // a failed refresh leaves the list as it was
      const query = this.$("search").value;
      if (query.trim()) this.search(query);
    }

    title(id) { return this.titles.get(id) || ""; }

    // The first page again (cursor null), or the page after the ones shown.
    async load(cursor) {
      const params = new URLSearchParams();
      if (cursor) params.set("cursor", cursor);
      const { conversations, nextCursor } = await this.app.api(`/api/conversations?${params}`);
      const rows = conversations.map((c) => this.row(c));
      if (cursor) this.$("conversations").append(...rows); else this.$("conversations").replaceChildren(...rows);
      this.nextCursor = nextCursor;
      this.$("more").hidden = !nextCursor;
      this.setActive(this.activeId);
    }

    row(conversation) {
      const id = conversation.conversationId;
      this.remember(id, conversation.title);
      // Focusable, so that the keyboard reaches it (Enter opens) and its buttons (shown on focus).
      const li = el("li", { "data-id": id, title: conversation.title || id, tabindex: "0" });
      li.append(el("span", { class: "title" }, conversation.title || id),
        el("span", { class: "row-actions" }, iconButton("rename", "Rename", "Rename conversation"),
          iconButton("delete", "Delete", "Delete conversation")));
      return li;
    }

    remember(id, title) {
      this.titles.set(id, title);
      if (id === this.activeId) this.onTitle(title);
    }

    setActive(id) {
      this.activeId = id;
      for (const li of this.$("conversations").children) li.classList.toggle("active", li.dataset.id === id);
      for (const li of this.$("results").children) li.classList.toggle("active", li.dataset.id === id);
    }

    onClick(event) {
      const li = event.target.closest("li[data-id]");
      if (!li || li.classList.contains("editing")) return;
      const action = event.target.closest("button[data-row]")?.dataset.row;
      if (action === "rename") this.startRename(li);
      else if (action === "delete") this.askDelete(li);
      else if (action === "confirm-delete") this.remove(li);
      else if (action === "cancel") this.restore(li);
      else if (!li.classList.contains("confirming")) this.open(li.dataset.id);
    }

    // ---- rename: the title becomes an input; Enter or leaving it saves, Escape cancels ----
    startRename(li) {
      const id = li.dataset.id;
      const input = el("input", { class: "rename", maxlength: "200", "aria-label": "New title" });
      input.value = this.title(id);
      li.classList.add("editing");
      li.replaceChildren(input);
      input.focus();
      input.select();
      let settled = false;
      const finish = async (save) => {
        if (settled) return;
        settled = true;
        const title = input.value.trim();
        if (save && title && title !== this.title(id)) {
          try {
            const record = await this.app.api(`/api/conversations/${encodeURIComponent(id)}`, {
              method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ title }) });
            this.remember(id, record.title);
          } catch (error) { this.app.showError(error.message); }
        }
        li.classList.remove("editing");
        li.replaceWith(this.row({ conversationId: id, title: this.title(id) }));
        this.setActive(this.activeId);
      };
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter") { event.preventDefault(); finish(true); }
        if (event.key === "Escape") finish(false);
      });
      input.addEventListener("blur", () => finish(true));
    }

    // ---- delete: ask in place first ----
    askDelete(li) {
      li.classList.add("confirming");
      li.replaceChildren(el("span", { class: "title" }, "Delete this conversation?"),
        el("span", { class: "confirm" }, el("button", { type: "button", class: "danger", "data-row": "confirm-delete" }, "Delete"),
          el("button", { type: "button", class: "plain", "data-row": "cancel" }, "Cancel")));
    }

    restore(li) {
      li.classList.remove("confirming");
      li.replaceWith(this.row({ conversationId: li.dataset.id, title: this.title(li.dataset.id) }));
      this.setActive(this.activeId);
    }

    async remove(li) {
      const id = li.dataset.id;
      li.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      try {
        await this.app.api(`/api/conversations/${encodeURIComponent(id)}`, { method: "DELETE" });
      } catch (error) {
        this.app.showError(error.message);
        this.restore(li);
        return;
      }
      li.remove();
      this.$("results").querySelector(`li[data-id="${CSS.escape(id)}"]`)?.remove();
      this.titles.delete(id);
      if (id === this.activeId) this.open(null);
    }

    // ---- search ----
    async search(text) {
      const query = text.trim();
      const seq = ++this.searchSeq;     // answers can overtake each other: only the latest counts
      const searching = query !== "";
      this.$("conversations").hidden = searching;
      this.$("more").hidden = searching || !this.nextCursor;
      this.$("results").hidden = !searching;
      const status = this.$("search-status");
      if (!searching) { status.hidden = true; this.$("results").replaceChildren(); return; }
      let conversations;
      try {
        ({ conversations } = await this.app.api(`/api/conversations?${new URLSearchParams({ q: query, limit: "30" })}`));
      } catch (error) {
        if (seq === this.searchSeq) { status.hidden = false; status.textContent = error.message; }
        return;
      }
      if (seq !== this.searchSeq) return;
      status.hidden = conversations.length > 0;
      status.textContent = "No conversation matches.";
      this.$("results").replaceChildren(...conversations.map((c) => {
        this.remember(c.conversationId, c.title);
        const li = el("li", { "data-id": c.conversationId },
          el("span", { class: "title" }, ...highlighted(c.title || c.conversationId, query)),
          el("span", { class: "snippet" }, ...highlighted(c.snippet || "", query)));
        if (c.messageId) li.dataset.message = c.messageId;
        return li;
      }));
      this.setActive(this.activeId);
    }
  }

  global.ConversationList = ConversationList;
})(window);
