// Small helpers of the Chat panel that need none of its state: the reply's usage line, copying to
// the clipboard, and a conversation's export as a download.
"use strict";
(function (global) {
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

  // Fetched with the API key (a plain link could not send it), then saved through a blob link.
  async function downloadExport(app, conversationId, format) {
    const response = await app.fetch(`/api/conversations/${encodeURIComponent(conversationId)}/export?format=${format}`);
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.detail || body.error || `HTTP ${response.status}`);
    }
    const blob = await response.blob();
    const name = dispositionName(response.headers.get("Content-Disposition"))
      || `conversation-${conversationId}.${format === "json" ? "json" : "md"}`;
    const url = URL.createObjectURL(blob);
    const link = Object.assign(document.createElement("a"), { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  global.ChatTools = { usageLine, copyText, downloadExport };
})(window);
