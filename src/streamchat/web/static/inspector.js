// The Inspector: the flow drawn from step configs, a live log of what runs, traces with timings,
// a live stream browser and an endpoint tester. Records arrive as custom events on the
// internal `__workbench` stream over the same WebSocket as the chat.
"use strict";
(function (global) {
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
    return node;
  };
  const SVG = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const time = (ms) => new Date(ms).toISOString().slice(11, 23);
  const LOG_LIMIT = 500;

  class Inspector {
    constructor(app) {
      this.app = app;
      this.flowData = null;
      this.records = [];
      this.browse = null;
      document.querySelectorAll("#inspector nav button").forEach((b) => b.addEventListener("click", () => this.show(b.dataset.panel)));
      this.started = false;
    }

    start() {
      if (this.started) return;
      this.started = true;
      this.loadFlow();
      this.loadRecords();
      this.app.live.subscribe("__workbench", "log", (frame) => {
        if (frame.event.type === "event" && frame.event.event.type === "record") this.addRecord(frame.event.event.data);
      });
      this.show("flow");
    }

    show(panel) {
      document.querySelectorAll("#inspector nav button").forEach((b) => b.classList.toggle("active", b.dataset.panel === panel));
      document.querySelectorAll("#inspector .panel").forEach((p) => { p.hidden = p.id !== "panel-" + panel; });
      if (panel === "traces") this.loadTraces();
      if (panel === "streams") this.loadStreams();
      if (panel === "dead") this.loadDeadLetters();
    }

    // ---- dead letters --------------------------------------------------------------------
    async loadDeadLetters() {
      const { deadLetters } = await this.app.api("/api/admin/dead-letters");
      document.getElementById("dead-rows").replaceChildren(...deadLetters.map((letter) => el("tr", { class: "dead-letter" },
        el("td", {}, new Date(letter.deadAt * 1000).toISOString().replace("T", " ").slice(0, 19)),
        el("td", {}, letter.step), el("td", {}, letter.topic), el("td", {}, letter.attempts),
        el("td", {}, el("a", { href: "#", class: "trace-link", onclick: (e) => { e.preventDefault(); this.openTrace(letter.traceId); } },
          String(letter.traceId).slice(0, 10))),
        el("td", { class: "error" }, letter.error))));
    }

    // ---- flow graph --------------------------------------------------------------------
    async loadFlow() {
      this.flowData = await this.app.api("/api/workbench/flow");
      this.drawFlow(this.flowData);
      this.drawEndpoints(this.flowData);
    }

    drawFlow(flow) {
      const columns = [
        flow.steps.filter((s) => s.type === "api"),
        flow.topics.map((t) => ({ name: t, type: "topic" })),
        flow.steps.filter((s) => s.type === "event"),
        flow.streams.map((s) => ({ name: s, type: "stream" })),
      ];
      const W = 190, H = 54, GAP_X = 70, GAP_Y = 22;
      const pos = new Map();
      columns.forEach((nodes, c) => nodes.forEach((node, r) => pos.set(`${node.type}:${node.name}`, { x: 20 + c * (W + GAP_X), y: 20 + r * (H + GAP_Y), node })));
      const rows = Math.max(...columns.map((c) => c.length), 1);
      const root = svg("svg", { width: 20 + 4 * (W + GAP_X), height: 40 + rows * (H + GAP_Y), id: "flow-graph" });
      root.append(svg("defs", {}));
      root.firstChild.innerHTML = '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#57606a"/></marker>';
      const edge = (from, to, label) => {
        const a = pos.get(from), b = pos.get(to);
        if (!a || !b) return;
        const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
        const mid = (x1 + x2) / 2;
        root.append(svg("path", { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, class: "edge", "data-from": from, "data-to": to, "marker-end": "url(#arrow)" }));
        if (label) root.append(svg("text", { x: mid, y: (y1 + y2) / 2 - 4, class: "edge-label" }, label));
      };
      for (const step of flow.steps) {
        const me = `${step.type}:${step.name}`;
        step.emits.forEach((t) => edge(me, `topic:${t}`, "emits"));
        (step.subscribes || []).forEach((t) => edge(`topic:${t}`, me, "subscribes"));
      }
      // Writes go right, to the streams column; an API step's writes skip the event column.
      for (const step of flow.steps) step.writes.forEach((s) => edge(`${step.type}:${step.name}`, `stream:${s}`, step.type === "event" ? "writes" : ""));
      for (const { x, y, node } of pos.values()) {
        const g = svg("g", { class: `node ${node.type}`, "data-node": `${node.type}:${node.name}` });
        g.append(svg("rect", { x, y, width: W, height: H, rx: 8 }));
        const title = node.type === "api" ? `${node.method} ${node.path}` : node.name;
        const kind = { api: `API step · ${node.name}`, event: "event step", topic: "topic", stream: "stream" }[node.type];
        g.append(svg("text", { x: x + 10, y: y + 20, class: "kind" }, kind));
        g.append(svg("text", { x: x + 10, y: y + 40, class: "title" }, title.length > 26 ? title.slice(0, 25) + "…" : title));
        root.append(g);
      }
      document.getElementById("panel-flow").replaceChildren(root);
    }

    flash(step) {
      const node = document.querySelector(`#flow-graph [data-node$=":${CSS.escape(step)}"]`);
      if (!node) return;
      node.classList.add("active");
      setTimeout(() => node.classList.remove("active"), 600);
    }

    // ---- live log ----------------------------------------------------------------------
    async loadRecords() {
      const { records } = await this.app.api("/api/workbench/records?limit=200");
      records.forEach((r) => this.addRecord(r));
    }

    describe(r) {
      switch (r.kind) {
        case "api": return `${r.method} ${r.path} → ${r.status}`;
        case "emit": return `emit ${r.topic} → ${r.subscribers.join(", ") || "nobody"}`;
        case "run": return `${r.status} (${r.topic}, attempt ${r.attempt + 1})${r.error ? " " + r.error : ""}${r.status === "failed" ? (r.willRetry ? " — will retry" : " — no retries left") : ""}`;
        case "dead": return `dead-lettered after ${r.attempts} attempts: ${r.error}`;
        case "stream": return `${r.op} ${r.stream}/${r.group.slice(0, 8)}…/${r.id.slice(0, 8)}… ${r.status || ""}${r.deltas ? ` (${r.deltas} deltas)` : ""}`;
        default: return JSON.stringify(r);
      }
    }

    addRecord(r) {
      this.records.push(r);
      if (r.step && (r.kind === "run" || r.kind === "api")) this.flash(r.step);
      const row = el("tr", { class: `record ${r.kind} ${r.status === "failed" || r.kind === "dead" ? "failed" : ""}` },
        el("td", {}, time(r.t)), el("td", {}, r.kind), el("td", {}, r.step || ""),
        el("td", {}, el("a", { href: "#", class: "trace-link", onclick: (e) => { e.preventDefault(); this.openTrace(r.traceId); } }, r.traceId.slice(0, 10))),
        el("td", {}, this.describe(r)), el("td", { class: "num" }, r.durationMs !== undefined ? r.durationMs.toFixed(1) + " ms" : ""));
      const body = document.getElementById("log-rows");
      body.prepend(row);
      while (body.children.length > LOG_LIMIT) body.lastChild.remove();
    }

    // ---- traces ------------------------------------------------------------------------
    async loadTraces() {
      const { traces } = await this.app.api("/api/workbench/traces");
      document.getElementById("trace-list").replaceChildren(...traces.map((t) =>
        el("li", { class: t.failed ? "failed" : "", onclick: () => this.openTrace(t.traceId), "data-trace": t.traceId },
          `${time(t.start)} · ${t.root || t.steps[0] || "?"} · ${t.steps.join(" → ")} · ${t.durationMs.toFixed(1)} ms`)));
    }

    async openTrace(traceId) {
      this.show("traces");
      const { records } = await this.app.api(`/api/workbench/traces/${encodeURIComponent(traceId)}`);
      const begins = (r) => r.t - (r.durationMs || 0);
      records.sort((a, b) => begins(a) - begins(b));
      const start = Math.min(...records.map(begins));
      const end = Math.max(...records.map((r) => r.t));
      const span = Math.max(end - start, 1);
      const rows = records.map((r) => {
        const from = (r.durationMs ? r.t - r.durationMs : r.t) - start;
        const bar = el("div", { class: `bar ${r.kind}`, style: `left:${(100 * from / span).toFixed(2)}%;width:${Math.max(0.4, 100 * (r.durationMs || 0) / span).toFixed(2)}%` });
        return el("div", { class: "trace-row" }, el("span", { class: "offset" }, `+${from.toFixed(1)} ms`),
          el("span", { class: "label" }, `${r.step || ""} · ${this.describe(r)}`), el("div", { class: "lane" }, bar));
      });
      document.getElementById("trace-view").replaceChildren(el("h3", {}, `Trace ${traceId} — ${span.toFixed(1)} ms`), ...rows);
    }

    // ---- stream browser ----------------------------------------------------------------
    async loadStreams() {
      const { streams } = await this.app.api("/api/workbench/streams");
      const list = document.getElementById("stream-groups");
      list.replaceChildren(...streams.flatMap((s) => [el("li", { class: "stream-name" }, s.name),
        ...s.groups.map((g) => el("li", { class: "group", "data-group": g, onclick: () => this.browseGroup(s.name, g) }, g))]));
    }

    browseGroup(stream, group) {
      if (this.browse) this.browse();
      const items = new Map();
      const table = document.getElementById("stream-items");
      const render = () => table.replaceChildren(el("h3", {}, `${stream} / ${group}`), ...[...items.values()].map((item) =>
        el("pre", { class: "item", "data-id": item.id }, JSON.stringify(item, null, 2))));
      this.browse = this.app.live.subscribe(stream, group, (frame) => {
        const e = frame.event;
        if (e.type === "sync") { items.clear(); (e.data || []).forEach((i) => items.set(i.id, i)); }
        else if (e.type === "create" || e.type === "update") items.set(e.data.id, e.data);
        else if (e.type === "delete") items.delete(e.data.id);
        else return;
        render();
      });
    }

    // ---- endpoint tester -----------------------------------------------------------------
    drawEndpoints(flow) {
      const apis = flow.steps.filter((s) => s.type === "api");
      const select = document.getElementById("endpoint");
      select.replaceChildren(...apis.map((s, i) => el("option", { value: i }, `${s.method} ${s.path}`)));
      const fill = () => {
        const step = apis[Number(select.value)];
        const params = [...step.path.matchAll(/{(\w+)}/g)].map((m) => m[1]);
        document.getElementById("endpoint-params").replaceChildren(...params.map((p) =>
          el("label", {}, p, el("input", { name: p, "data-param": p }))));
        const body = document.getElementById("endpoint-body");
        body.hidden = !step.body;
        if (step.body) body.value = JSON.stringify(Object.fromEntries(Object.entries(step.body.properties || {})
          .filter(([k]) => (step.body.required || []).includes(k)).map(([k]) => [k, "Hello from the Workbench"])), null, 2);
        document.getElementById("endpoint-description").textContent = step.description || "";
      };
      select.onchange = fill;
      if (apis.length) fill();
      document.getElementById("endpoint-send").onclick = async () => {
        const step = apis[Number(select.value)];
        let path = step.path;
        document.querySelectorAll("#endpoint-params input").forEach((i) => { path = path.replace(`{${i.dataset.param}}`, encodeURIComponent(i.value)); });
        const options = { method: step.method, headers: this.app.headers({ "Content-Type": "application/json" }) };
        if (step.body) options.body = document.getElementById("endpoint-body").value;
        const started = performance.now();
        const response = await fetch(path, options);
        const text = await response.text();
        const trace = response.headers.get("x-trace-id");
        const out = document.getElementById("endpoint-result");
        out.replaceChildren(el("div", { class: "status" }, `${response.status} ${response.statusText} · ${(performance.now() - started).toFixed(1)} ms `,
          trace ? el("a", { href: "#", class: "trace-link", onclick: (e) => { e.preventDefault(); this.openTrace(trace); } }, "trace " + trace.slice(0, 10)) : ""),
          el("pre", {}, (() => { try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; } })()));
      };
    }
  }

  global.Inspector = Inspector;
})(window);
