// A small Markdown renderer that is safe by construction: every character of the input is
// HTML-escaped first, and only a fixed set of tags is produced afterwards. Links keep only
// http(s) and mailto targets, so `javascript:` URLs and raw HTML in a message stay inert text.
"use strict";
(function (global) {
  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  function unescapeHtml(text) {
    return text.replace(/&(amp|lt|gt|quot|#39);/g, (_, e) => ({ amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'" }[e]));
  }

  function safeHref(escapedUrl) {
    const url = unescapeHtml(escapedUrl).trim();
    return /^(https?:\/\/|mailto:)/i.test(url) ? escapeHtml(url) : null;
  }

  function inline(escaped) {
    const codes = [];
    let text = escaped.replace(/`([^`]+)`/g, (_, code) => { codes.push(code); return "\u0000" + (codes.length - 1) + "\u0000"; });
    text = text.replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (all, label, url) => {
      const href = safeHref(url);
      return href ? `<a href="${href}" target="_blank" rel="noopener noreferrer nofollow">${label}</a>` : label;
    });
    text = text.replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>").replace(/__([^_]+)__/g, "<strong>$1</strong>");
    text = text.replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");
    return text.replace(/\u0000(\d+)\u0000/g, (_, i) => `<code>${codes[Number(i)]}</code>`);
  }

  function render(markdown) {
    const lines = escapeHtml(markdown).split("\n");
    const out = [];
    let paragraph = [];
    let list = null;
    const flushParagraph = () => { if (paragraph.length) { out.push(`<p>${inline(paragraph.join("<br>"))}</p>`); paragraph = []; } };
    const flushList = () => { if (list) { out.push(`<${list.tag}>${list.items.map((i) => `<li>${inline(i)}</li>`).join("")}</${list.tag}>`); list = null; } };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = line.match(/^\s*```(.*)$/);
      if (fence) {
        flushParagraph(); flushList();
        const code = [];
        for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) code.push(lines[i]);
        out.push(`<pre><code>${code.join("\n")}</code></pre>`);
        continue;
      }
      const heading = line.match(/^(#{1,6})\s+(.*)$/);
      const bullet = line.match(/^\s*[-*+]\s+(.*)$/);
      const numbered = line.match(/^\s*\d+[.)]\s+(.*)$/);
      if (heading) {
        flushParagraph(); flushList();
        const level = Math.min(heading[1].length + 2, 6);
        out.push(`<h${level}>${inline(heading[2])}</h${level}>`);
      }
      else if (bullet || numbered) {
        flushParagraph();
        const tag = bullet ? "ul" : "ol";
        if (!list || list.tag !== tag) { flushList(); list = { tag, items: [] }; }
        list.items.push((bullet || numbered)[1]);
      } else if (!line.trim()) { flushParagraph(); flushList(); }
      else { flushList(); paragraph.push(line); }
    }
    flushParagraph(); flushList();
    return out.join("");
  }

  global.renderMarkdown = render;
})(window);
