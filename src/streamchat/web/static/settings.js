// The open conversation's model and settings (system prompt, temperature, max tokens). They live on the
// server with the conversation, so every tab and device agrees: shown from GET /api/conversations/{id},
// changed by PATCH. A chat not started yet keeps its choices here and sends them with its first message.
"use strict";
(function (global) {
  const FIELDS = ["model", "systemPrompt", "temperature", "maxTokens"];
  const blank = () => Object.fromEntries(FIELDS.map((name) => [name, null]));

  class SettingsPanel {
    constructor(app) {
      this.app = app;
      this.$ = (id) => document.getElementById(id);
      this.models = [];                 // GET /api/models' `models`
      this.conversationId = null;
      this.settings = blank();          // what the server holds (or, before the first message, what will be sent)
      this.loading = 0;                 // answers can overtake each other: only the latest counts
      this.$("model-picker").addEventListener("change", () => this.pickModel());
      this.$("settings-toggle").addEventListener("click", () => this.toggle());
      this.$("settings-panel").addEventListener("submit", (event) => { event.preventDefault(); this.save(); });
      this.$("settings-reset").addEventListener("click", () => this.save(true));
      // Another tab or device may have changed them meanwhile (unless this one is being edited).
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "visible" && this.$("settings-panel").hidden) this.show(this.conversationId);
      });
      this.loadModels();
    }

    async loadModels() {
      try { this.models = (await this.app.api("/api/models")).models; } catch { setTimeout(() => this.loadModels(), 2000); return; }
      this.render();
    }

    get defaultModel() { return this.models.find((model) => model.default) || null; }

    // The model that answers: the conversation's, or the default.
    get current() { return this.models.find((model) => model.name === this.settings.model) || this.defaultModel; }

    async show(conversationId) {
      const seq = ++this.loading;
      this.conversationId = conversationId;
      if (!conversationId) { this.settings = blank(); this.render(); return; }
      try {
        const { settings } = await this.app.api(`/api/conversations/${encodeURIComponent(conversationId)}`);
        if (seq === this.loading) { this.settings = Object.assign(blank(), settings); this.render(); }
      } catch { /* a conversation not stored yet (its first message is on the way) keeps what is shown */ }
    }

    // The fields a new conversation's first message carries (only those chosen).
    chosen() {
      if (this.conversationId) return {};
      return Object.fromEntries(Object.entries(this.settings).filter(([, value]) => value !== null));
    }

    // Everything as the settings stand; the panel's fields only while it is closed (or as it opens),
    // so that what is being typed there stays.
    render(fill = this.$("settings-panel").hidden) {
      const picker = this.$("model-picker");
      const options = this.models.map((model) => new Option(model.default ? `${model.name} (default)` : model.name, model.name));
      const wanted = this.settings.model;
      if (wanted && !this.models.some((model) => model.name === wanted)) {
        // A model since removed from the models file: named, so that the user sees why replies fail.
        const gone = new Option(`${wanted} (not configured)`, wanted);
        gone.disabled = true;
        options.unshift(gone);
      }
      picker.replaceChildren(...options);
      picker.value = wanted || this.defaultModel?.name || "";
      picker.hidden = this.models.length === 0;
      const params = this.current?.params || {};
      if (fill) {
        this.$("system-prompt").value = this.settings.systemPrompt ?? "";
        this.$("temperature").value = this.settings.temperature ?? "";
        this.$("max-tokens").value = this.settings.maxTokens ?? "";
      }
      this.$("temperature").placeholder = params.temperature != null ? `model default: ${params.temperature}` : "model default";
      this.$("max-tokens").placeholder = params.max_tokens != null ? `model default: ${params.max_tokens}` : "no limit";
      this.$("settings-summary").textContent = this.summary();
    }

    // "temperature 0.2 · max 100 tokens · system prompt": what differs from the model's defaults.
    summary() {
      const { systemPrompt, temperature, maxTokens } = this.settings;
      return [temperature !== null ? `temperature ${temperature}` : null, maxTokens !== null ? `max ${maxTokens} tokens` : null,
        systemPrompt ? "system prompt" : null].filter(Boolean).join(" · ");
    }

    toggle(open) {
      const panel = this.$("settings-panel");
      panel.hidden = open === undefined ? !panel.hidden : !open;
      this.$("settings-toggle").setAttribute("aria-expanded", String(!panel.hidden));
      if (!panel.hidden) this.render(true);
    }

    pickModel() { this.change({ model: this.$("model-picker").value || null }); }

    // The panel's fields (an empty one: the model's default), or with `reset` every one back to the model's.
    async save(reset) {
      const number = (id) => (this.$(id).value.trim() === "" ? null : Number(this.$(id).value));
      const change = reset ? { systemPrompt: null, temperature: null, maxTokens: null }
        : { systemPrompt: this.$("system-prompt").value.trim() ? this.$("system-prompt").value : null,
            temperature: number("temperature"), maxTokens: number("max-tokens") };
      if (await this.change(change)) this.toggle(false);
    }

    // PATCH the conversation (or keep the choice for the first message); whether it was taken.
    async change(fields) {
      this.app.showError("");
      if (!this.conversationId) {
        Object.assign(this.settings, fields);
        this.render();
        return true;
      }
      try {
        const answer = await this.app.api(`/api/conversations/${encodeURIComponent(this.conversationId)}`, {
          method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify(fields) });
        this.settings = Object.assign(blank(), answer.settings);
        this.render();
        return true;
      } catch (error) {
        this.app.showError(error.message);
        this.render();    // the picker back to what the server holds; the panel keeps what was typed
        return false;
      }
    }
  }

  global.SettingsPanel = SettingsPanel;
})(window);
