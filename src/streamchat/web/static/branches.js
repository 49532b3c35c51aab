// What a message offers beyond its text, on the conversation's tree: the `‹ 2/3 ›` switcher between a
// message and its siblings (edits of a user message, regenerations of a reply), the inline editor of
// a user message (Save sends the edit: a sibling with its own reply, shown at once), and Continue on
// a reply a token limit cut. A switch goes to the server (PUT .../active), whose `active-branch`
// event shows it in every tab.
"use strict";
(function (global) {
  const FINISHED = new Set(["completed", "error", "stopped"]);
  // What Continue sends: a new message on the active branch, after the reply that was cut.
  const CONTINUE = "Continue.";

  class BranchControls {
    constructor(chat) {
      this.chat = chat;
      this.app = chat.app;
    }

    path(suffix) {
      return `/api/conversations/${encodeURIComponent(this.chat.conversationId)}${suffix}`;
    }

    async send(path, method, body) {
      return this.app.api(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    }

    // The switcher, the cut notice and Continue, as the tree and the active branch stand now.
    decorate(el, item) {
      if (!item) return;
      const siblings = this.chat.tree.siblings(item.id);
      const versions = el.querySelector(".versions");
      const position = siblings.length > 1 ? `${siblings.indexOf(item.id) + 1}/${siblings.length}` : "";
      versions.hidden = !position;
      if (versions.dataset.position !== position) {
        versions.dataset.position = position;
        const index = siblings.indexOf(item.id);
        versions.innerHTML = position && '<button type="button" class="link" data-action="previous" aria-label="Previous version" data-label="‹"></button>'
          + '<span class="position"></span>'
          + '<button type="button" class="link" data-action="next" aria-label="Next version" data-label="›"></button>';
        if (position) {
          versions.querySelector(".position").textContent = position;
          versions.querySelector("[data-action=previous]").disabled = index === 0;
          versions.querySelector("[data-action=next]").disabled = index === siblings.length - 1;
        }
      }
      this.decorateCut(el, item);
    }

    decorateCut(el, item) {
      let cut = el.querySelector(".cut");
      if (item.finishReason !== "length") { cut?.remove(); return; }
      if (!cut) {
        cut = document.createElement("div");
        cut.className = "cut";
        cut.innerHTML = '<span>✂ Cut off at the token limit.</span> '
          + '<button type="button" class="plain" data-action="continue">Continue</button>';
        el.querySelector(".usage").before(cut);
      }
      // Only at the branch's end: a message sent elsewhere would not follow this reply.
      cut.querySelector("button").hidden = !(FINISHED.has(item.status) && this.chat.leaf === item.id);
    }

    // Whether the button was one of these controls (and is handled).
    handle(button) {
      const el = button.closest("article");
      const action = button.dataset.action;
      if (action === "previous" || action === "next") this.step(el.dataset.id, action === "next" ? 1 : -1);
      else if (action === "edit") this.startEdit(el);
      else if (action === "save-edit") this.saveEdit(el, button);
      else if (action === "cancel-edit") this.endEdit(el);
      else if (action === "continue") this.continueReply(button);
      else return false;
      return true;
    }

    step(id, delta) {
      const siblings = this.chat.tree.siblings(id);
      const target = siblings[siblings.indexOf(id) + delta];
      if (target) this.activate(target);
    }

    // Make the branch through a message active (its leaf: the one last active under it).
    async activate(messageId) {
      try {
        const answer = await this.send(this.path("/active"), "PUT", { messageId });
        this.chat.showBranch(answer.path);
      } catch (error) { this.app.showError(error.message); }
    }

    startEdit(el) {
      if (el.querySelector(".editor")) return;
      const item = this.chat.items.get(el.dataset.id);
      const editor = document.createElement("div");
      editor.className = "editor";
      editor.innerHTML = '<textarea rows="3" maxlength="32000" aria-label="Edited message"></textarea><div class="editor-actions">'
        + '<button type="button" data-action="save-edit">Save</button>'
        + '<button type="button" class="plain" data-action="cancel-edit">Cancel</button></div>';
      const area = editor.querySelector("textarea");
      area.value = item ? item.message : "";
      area.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); this.saveEdit(el, editor.querySelector("[data-action=save-edit]")); }
        if (event.key === "Escape") this.endEdit(el);
      });
      const body = el.querySelector(".body");
      body.hidden = true;
      body.after(editor);
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
    }

    endEdit(el) {
      el.querySelector(".editor")?.remove();
      el.querySelector(".body").hidden = false;
    }

    // The edit is a new message beside this one, with its own reply; both arrive live and are shown.
    async saveEdit(el, button) {
      const message = el.querySelector(".editor textarea").value;
      if (!message.trim() || button.disabled) return;
      button.disabled = true;
      this.app.showError("");
      try {
        await this.send(this.path(`/messages/${encodeURIComponent(el.dataset.id)}/edit`), "POST", { message });
        this.endEdit(el);
      } catch (error) {
        this.app.showError(error.message);
        button.disabled = false;
      }
    }

    async continueReply(button) {
      button.disabled = true;
      this.app.showError("");
      try {
        await this.send("/chat", "POST", { conversationId: this.chat.conversationId, message: CONTINUE });
      } catch (error) { this.app.showError(error.message); }
      finally { button.disabled = false; }
    }
  }

  global.BranchControls = BranchControls;
})(window);
