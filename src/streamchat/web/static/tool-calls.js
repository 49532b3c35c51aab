// A reply's tool calls on the Chat panel. Each call is an item of its own in the conversation stream
// (`from: "tool"`, its parent the reply, `round` and `offset` placing it in the reply's text), so the
// page keeps them beside the messages (ReplyCalls) and lays each reply out as the model wrote it:
// text, the round's calls, more text (ReplyBody). A call is a <details> block (ToolCallView): its
// name, its arguments growing while the model writes them, its status (a spinner while it runs, with
// its progress), its result or error, and Approve / Deny while it waits for the user. Every change
// comes from the stream, so an answer or a Stop in one tab shows in every other.
"use strict";
(function (global) {
  const { MarkdownView } = global.StreamchatMarkdown;
  const ENDED = new Set(["completed", "error", "cancelled", "denied"]);
  const STATUS_TEXT = { pending: "pending", awaiting_approval: "awaiting approval",
    awaiting_result: "waiting for the client's result", running: "running",
    completed: "completed", error: "error", cancelled: "cancelled", denied: "denied" };
  const PREVIEW = 160;   // characters of a closed block's one-line preview
  const PLACE = /\.t(\d+)\.(\d+)$/;   // <replyId>.t<round>.<index>

  function isToolCall(item) { return item.from === "tool"; }

  // Round first, then the call's index in its round (what its id says), as the model made them.
  function byPlace(a, b) {
    const [, , ai = "0"] = a.id.match(PLACE) || [];
    const [, , bi = "0"] = b.id.match(PLACE) || [];
    return (a.round || 0) - (b.round || 0) || Number(ai) - Number(bi);
  }

  // Every reply's calls, kept as they arrive so a reply's render never scans the whole conversation.
  class ReplyCalls {
    constructor() { this.byReply = new Map(); }   // reply id -> Map(call id -> item)

    reset(items) {
      this.byReply.clear();
      for (const item of items) this.put(item);
    }

    put(item) {
      if (!isToolCall(item) || !item.parentId) return;
      if (!this.byReply.has(item.parentId)) this.byReply.set(item.parentId, new Map());
      this.byReply.get(item.parentId).set(item.id, item);
    }

    remove(item) { this.byReply.get(item.parentId)?.delete(item.id); }

    of(replyId) {
      const calls = this.byReply.get(replyId);
      return calls ? [...calls.values()].sort(byPlace) : [];
    }
  }

  // JSON text shown indented once it parses (arguments still streaming are shown as they are).
  function prettyArguments(text) {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
  }

  function prettyResult(result) {
    return typeof result === "string" ? result : JSON.stringify(result ?? null, null, 2);
  }

  function progressText(progress) {
    if (!progress) return "";
    const done = progress.total != null ? `${progress.progress}/${progress.total}` : String(progress.progress);
    return progress.message ? `${done} · ${progress.message}` : done;
  }

  // Set an element's text only when it changed: a frame's render leaves a selection in place.
  function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

  class ToolCallView {
    constructor(call) {
      const el = this.element = document.createElement("details");
      el.className = "tool-call";
      el.dataset.id = call.id;
      el.innerHTML = '<summary><span class="tool-icon" aria-hidden="true"></span><span class="tool-name"></span>'
        + '<span class="tool-status"></span><span class="tool-preview"></span></summary>'
        + '<div class="tool-detail"><div class="tool-progress" hidden><progress></progress><span></span></div>'
        + '<div class="tool-section"><span class="tool-label">Arguments</span><pre class="tool-arguments"></pre></div>'
        + '<div class="tool-section tool-outcome" hidden><span class="tool-label"></span><pre></pre></div></div>';
      // A block the user opened or closed stays so; untouched ones close when their call ends.
      el.querySelector("summary").addEventListener("click", () => { el.dataset.touched = "true"; });
      el.open = !ENDED.has(call.status);
      this.status = null;
      // What the JSON texts were made from: parsed or written again only when it changes, not every frame.
      this.argumentsShown = null;
      this.resultShown = undefined;
      this.resultText = null;
      this.resultLine = null;
    }

    update(call) {
      const el = this.element;
      const status = call.status;
      const name = call.name || "tool";
      if (status !== this.status) {
        if (this.status !== null && !el.dataset.touched) el.open = !ENDED.has(status);
        if (status === "awaiting_approval") el.open = true;   // its buttons must be seen
        this.status = status;
        el.dataset.status = status;
        el.setAttribute("aria-busy", String(status === "running" || status === "pending"));
        el.querySelector(".tool-icon").replaceChildren(...(status === "running" ? [spinner()] : []));
      }
      if (status === "completed") this.madeResult(call.result);
      setText(el.querySelector(".tool-name"), name);
      setText(el.querySelector(".tool-status"), STATUS_TEXT[status] || status);
      setText(el.querySelector(".tool-preview"), this.preview(call));
      if (call.arguments !== this.argumentsShown) {
        this.argumentsShown = call.arguments;
        setText(el.querySelector(".tool-arguments"), prettyArguments(call.arguments || ""));
      }
      this.showProgress(status === "running" ? call.progress : null, name);
      this.showOutcome(call);
      this.showApproval(status === "awaiting_approval", name);
    }

    madeResult(result) {
      if (result === this.resultShown && this.resultText !== null) return;
      this.resultShown = result;
      this.resultText = prettyResult(result);
      this.resultLine = "→ " + JSON.stringify(result ?? null);
    }

    // One line for a closed block: the outcome when there is one, else the arguments.
    preview(call) {
      let line = call.arguments || "";
      if (call.status === "completed") line = this.resultLine;
      else if (call.error) line = call.error;
      else if (call.status === "running" && call.progress) line = progressText(call.progress);
      return line.length > PREVIEW ? line.slice(0, PREVIEW) + "…" : line;
    }

    showProgress(progress, name) {
      const box = this.element.querySelector(".tool-progress");
      box.hidden = !progress;
      if (!progress) return;
      const bar = box.querySelector("progress");
      bar.setAttribute("aria-label", `Progress of ${name}`);
      if (progress.total != null && progress.total > 0) {
        bar.max = progress.total;
        bar.value = Math.min(progress.progress, progress.total);
      } else bar.removeAttribute("value");   // how far is unknown: an indeterminate bar
      setText(box.querySelector("span"), progressText(progress));
    }

    showOutcome(call) {
      const box = this.element.querySelector(".tool-outcome");
      let label = null;
      let text = "";
      if (call.status === "completed") { label = "Result"; text = this.resultText; }
      else if (call.status === "denied") { label = "Denied"; text = call.error || "denied by the user"; }
      else if (call.status === "cancelled") { label = "Cancelled"; text = call.error || "the call was cancelled"; }
      else if (call.error) { label = "Error"; text = call.error; }
      box.hidden = label === null;
      box.classList.toggle("failed", call.status === "error");
      setText(box.querySelector(".tool-label"), label || "");
      setText(box.querySelector("pre"), text);
    }

    // Approve / Deny only while the call waits: an answer from any tab removes them here.
    showApproval(waiting, name) {
      let bar = this.element.querySelector(".tool-approval");
      if (!waiting) { bar?.remove(); return; }
      if (bar) return;
      bar = document.createElement("div");
      bar.className = "tool-approval";
      bar.innerHTML = '<span>This call needs your approval to run.</span>'
        + '<button type="button" data-action="approve"></button>'
        + '<button type="button" class="plain" data-action="deny"></button>';
      for (const [action, text] of [["approve", "Approve"], ["deny", "Deny"]]) {
        const button = bar.querySelector(`[data-action=${action}]`);
        button.textContent = text;
        button.setAttribute("aria-label", `${text} the ${name} call`);
      }
      this.element.querySelector(".tool-detail").append(bar);
    }
  }

  function spinner() {
    const el = document.createElement("span");
    el.className = "spinner";
    return el;
  }

  // Where each round's calls go: where its text stopped (the furthest offset of its calls).
  function rounds(calls) {
    const found = new Map();
    for (const call of calls) {
      const round = call.round || 0;
      if (!found.has(round)) found.set(round, { offset: 0, calls: [] });
      const entry = found.get(round);
      entry.offset = Math.max(entry.offset, call.offset || 0);
      entry.calls.push(call);
    }
    return [...found.entries()].sort((a, b) => a[0] - b[0]).map(([, entry]) => entry);
  }

  // A reply's body: its Markdown alone while it has no calls (as every reply without tools renders);
  // once it has some, text segments each with a MarkdownView of their own, and the rounds' calls between.
  class ReplyBody {
    constructor(element) {
      this.element = element;
      this.single = new MarkdownView(element);
      this.segments = null;       // MarkdownViews, one more than the rounds
      this.groups = [];           // one element per round, holding its calls' blocks
      this.views = new Map();     // call id -> ToolCallView
    }

    update(text, ended, calls) {
      if (!calls.length && !this.segments) { this.single.update(text, ended); return; }
      if (!this.segments) {
        this.element.replaceChildren();
        this.segments = [this.segment()];
      }
      const laid = rounds(calls);
      while (this.groups.length > laid.length) { this.groups.pop().remove(); this.segments.pop().element.remove(); }
      while (this.groups.length < laid.length) {
        const group = document.createElement("div");
        group.className = "tool-calls";
        this.element.append(group);
        this.groups.push(group);
        this.segments.push(this.segment());
      }
      let start = 0;
      laid.forEach((round, i) => {
        const end = Math.min(Math.max(round.offset, start), text.length);
        this.segments[i].update(text.slice(start, end), ended);
        this.place(this.groups[i], round.calls);
        start = end;
      });
      this.segments[laid.length].update(text.slice(start), ended);
      const present = new Set(calls.map((call) => call.id));
      for (const [id, view] of this.views) if (!present.has(id)) { view.element.remove(); this.views.delete(id); }
    }

    segment() {
      const el = document.createElement("div");
      el.className = "segment";
      this.element.append(el);
      return new MarkdownView(el);
    }

    place(group, calls) {
      calls.forEach((call, i) => {
        let view = this.views.get(call.id);
        if (!view) this.views.set(call.id, view = new ToolCallView(call));
        view.update(call);
        if (group.children[i] !== view.element) group.insertBefore(view.element, group.children[i] || null);
      });
    }
  }

  global.StreamchatToolCalls = { isToolCall, ReplyCalls, ReplyBody, ToolCallView };
})(window);
