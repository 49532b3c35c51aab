// Boots the Workbench: the shared API helper (with the API key, when the server asks for one),
// the shared live connection, and the two tabs.
"use strict";
(function () {
  const app = {
    key: localStorage.getItem("streamchat.key") || "",
    headers(extra) {
      const h = Object.assign({}, extra || {});
      if (app.key) h.Authorization = "Bearer " + app.key;
      return h;
    },
    // fetch with the key; on 401, ask for a key once and try again with it.
    async fetch(path, options) {
      const response = await fetch(path, Object.assign({}, options, { headers: app.headers(options && options.headers) }));
      if (response.status === 401) {
        const key = prompt("This server needs an API key:");
        if (key) {
          app.key = key.trim();
          localStorage.setItem("streamchat.key", app.key);
          app.live.connect();
          return app.fetch(path, options);
        }
      }
      return response;
    },
    // A JSON call: the body, or an Error with the API's detail.
    async api(path, options) {
      const response = await app.fetch(path, options);
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(body.detail || body.error || `HTTP ${response.status}`);
      return body;
    },
  };

  app.live = new Live(() => app.key);
  app.live.onStatus((online) => {
    const el = document.getElementById("connection");
    el.textContent = online ? "live" : "reconnecting…";
    el.className = "status " + (online ? "online" : "offline");
  });
  // The model's name in the top bar; while the server is still preparing it, a notice (a message
  // sent meanwhile is accepted and streams once the model is ready).
  async function showModel() {
    let serving;
    try { serving = (await app.api("/api/models")).serving; } catch (error) { setTimeout(showModel, 2000); return; }
    const name = serving.model.split("/").pop();
    document.getElementById("model").textContent = `${name} (${serving.provider})`;
    const notice = document.getElementById("model-notice");
    notice.hidden = serving.status === "ready";
    notice.classList.toggle("failed", serving.status === "failed");
    if (serving.status === "loading") {
      notice.textContent = `preparing the local model… (${serving.detail}) A message sent now is answered as soon as it is ready.`;
      setTimeout(showModel, 500);
    } else if (serving.status === "failed") {
      notice.textContent = `The model could not be prepared: ${serving.detail}`;
    }
  }

  app.chat = new Chat(app);
  app.inspector = new Inspector(app);

  function showTab(tab) {
    document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
    document.querySelectorAll(".tab").forEach((t) => { t.hidden = t.id !== tab; });
    if (tab === "inspector") app.inspector.start();
    sessionStorage.setItem("streamchat.tab", tab);
  }
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  showTab(sessionStorage.getItem("streamchat.tab") || "chat");
  app.live.connect();
  showModel();
  window.streamchat = app;
})();
