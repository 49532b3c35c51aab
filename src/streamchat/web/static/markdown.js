// Markdown for replies: markdown-it parses (raw HTML off, so `<script>` in a reply is text), DOMPurify
// sanitizes what it produced anyway, highlight.js colours fenced code. The libraries are the
// package's own copies in /static/vendor/ (see README, "The chat page").
//
// A reply streams token by token, so MarkdownView renders incrementally: top-level blocks that are
// finished (another block has begun after them) are rendered once and kept; each update parses and
// renders only the unfinished tail. An update costs what arrived plus the last block, whatever the
// length of the reply.
"use strict";
(function (global) {
  const hljs = global.hljs;
  const md = global.markdownit({ html: false, linkify: true, highlight });
  // A model's image would load from anywhere the reply names (a way to leak the conversation): keep
  // `![alt](url)` as text and a link instead.
  md.disable("image");
  // Links only from URLs with a scheme: "setup.py" and "README.md" are file names, not domains.
  md.linkify.set({ fuzzyLink: false });

  function highlight(code, info) {
    const language = (info || "").trim().split(/\s+/)[0];
    if (!language || !hljs.getLanguage(language)) return "";   // "" lets markdown-it escape it plainly
    try { return hljs.highlight(code, { language, ignoreIllegals: true }).value; } catch { return ""; }
  }

  global.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });

  // Sanitized DOM for block tokens, each fenced code block given a bar with its language and a copy button.
  function toFragment(tokens, env) {
    const fragment = global.DOMPurify.sanitize(md.renderer.render(tokens, md.options, env), { RETURN_DOM_FRAGMENT: true });
    for (const pre of fragment.querySelectorAll("pre")) {
      const code = pre.querySelector("code");
      const language = ((code && code.className.match(/language-(\S+)/)) || [])[1] || "";
      const bar = document.createElement("div");
      bar.className = "code-bar";
      bar.innerHTML = '<span class="language"></span><button type="button" class="link copy" data-copy="code" aria-label="Copy code" data-label="Copy"></button>';
      bar.firstChild.textContent = language;
      const block = document.createElement("div");
      block.className = "code-block";
      pre.replaceWith(block);
      block.append(bar, pre);
    }
    return fragment;
  }

  // A link reference definition: "[label]: destination", up to three spaces in.
  const DEFINITION = /^ {0,3}\[[^\]\n]+\]:/m;

  // Character offset where line `line` (0-based) of `text` starts, counting line breaks as markdown-it does.
  function lineOffset(text, line) {
    const breaks = /\r\n?|\n/g;
    for (let i = 0; i < line; i++) if (!breaks.exec(text)) return text.length;
    return line ? breaks.lastIndex : 0;
  }

  // Index of the first token of each top-level block (a level-0 opening or self-contained token).
  function blockStarts(tokens) {
    const starts = [];
    tokens.forEach((token, i) => { if (token.level === 0 && token.nesting !== -1) starts.push(i); });
    return starts;
  }

  class MarkdownView {
    constructor(element) {
      this.element = element;
      this.clear();
    }

    clear() {
      this.source = "";
      this.ended = false;
      this.done = 0;          // text[0:done] is rendered into kept blocks
      this.doneText = "";
      this.tail = [];         // the nodes of the unfinished blocks, replaced on every update
      this.references = {};   // link reference definitions ([label]: url) in the kept blocks
      this.element.replaceChildren();
    }

    // A fresh markdown-it env for each parse: a definition still being typed ("[x]: htt") must not
    // stick, since markdown-it keeps the first definition of a label.
    env() { return { references: Object.assign({}, this.references) }; }

    // Show `text`; `ended` once no more will come.
    update(text, ended = false) {
      if (text === this.source && ended === this.ended) return;
      // Only growth is incremental; anything else (another text altogether) starts over. startsWith
      // is a memory compare: microseconds even for a long reply.
      if (!text.startsWith(this.doneText)) this.clear();
      this.source = text;
      this.ended = ended;
      if (ended && DEFINITION.test(text)) {
        // A link defined below its use ("[text][1]" ... "[1]: url", as cited sources often are) stays
        // text in the blocks kept before the definition came: render such a reply once more, whole.
        this.element.replaceChildren(render(text));
        this.tail = [];
        this.done = text.length;
        this.doneText = text;
        return;
      }
      const tail = text.slice(this.done);
      let tokens = md.parse(tail, this.env());
      const starts = blockStarts(tokens);
      for (const node of this.tail) node.remove();
      if (starts.length > 1) {
        // Every block before the last is finished: once a new block has begun, nothing after it can
        // change the blocks above (CommonMark closes them for good). Render them once and keep them,
        // parsed on their own so that their link definitions are the ones kept.
        const last = starts[starts.length - 1];
        const end = lineOffset(tail, tokens[last].map[0]);
        const env = this.env();
        this.element.append(toFragment(md.parse(tail.slice(0, end), env), env));
        this.references = env.references;
        this.done += end;
        this.doneText = text.slice(0, this.done);
        tokens = tokens.slice(last);
      }
      const fragment = toFragment(tokens, {});
      this.tail = [...fragment.childNodes];
      this.element.append(fragment);
    }
  }

  // The whole of `text` in one go (what each update would cost without the kept blocks).
  function render(text) {
    return toFragment(md.parse(text, {}), {});
  }

  global.StreamchatMarkdown = { MarkdownView, render };
})(window);
