"""The models this server runs, each with its provider: from the models file, or the one model that
today's variables make (OPENAI_* or STREAMCHAT_LOCAL_MODEL) when no file is given; and the file's
MCP servers (none without a file), which the app connects as tool sources.

Every provider is made before the server listens, so a model that cannot be made (a local model's
file missing, the embedded runtime not installed) stops the start with a line naming it; they are
started (an embedded model loads in the background) and closed together with the app.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streamchat.llm.base import ChatProvider
from streamchat.llm.local_models import KNOWN, LocalModelError
from streamchat.llm.local_models import resolve as resolve_local_model
from streamchat.llm.local_provider import LocalProvider
from streamchat.llm.models_file import (
    ConfiguredModel,
    LocalEntry,
    ModelParams,
    ModelsFileError,
    OpenAIEntry,
    load,
)
from streamchat.llm.openai_provider import OpenAIProvider
from streamchat.settings import Settings
from streamchat.tools.client_tools import ClientTool
from streamchat.tools.mcp.config import McpServerEntry

logger = logging.getLogger("streamchat.llm.models")

NEEDS_RUNTIME = ("the embedded model needs llama-cpp-python: pip install 'streamchat[local]' "
                 "(./scripts/serve does it)")


class UnknownModel(LookupError):
    """A model name this server has no model for; the message names it and the ones it has."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"no model {name!r} here; the models are {', '.join(map(repr, known))}")
        self.name = name


class ModelSet:
    """The configured models by name, the default among them, and their providers."""

    def __init__(self, models: Sequence[ConfiguredModel], providers: Mapping[str, ChatProvider],
                 default: str, mcp_servers: Sequence[McpServerEntry] = (),
                 client_tools: Sequence[ClientTool] = ()) -> None:
        self._models = {model.name: model for model in models}
        self._providers = dict(providers)
        self.default = default
        #: The models file's `[[mcp_servers]]`, checked; the app connects them (tools/mcp/servers.py).
        self.mcp_servers = tuple(mcp_servers)
        #: The models file's `[[client_tools]]`; the app adds them to its tools.
        self.client_tools = tuple(client_tools)

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> ModelSet:
        """From STREAMCHAT_MODELS_FILE when it is set (keys from `environ`, default: the environment over
        `.env`), else the one model of the OPENAI_* / local-model variables."""
        if settings.models_file is None:
            model = _model_of_the_variables(settings)
            return cls([model], {model.name: _provider(settings, model)}, model.name)
        configured = load(settings.models_file, environ)
        providers: dict[str, ChatProvider] = {}
        for model in configured.models:
            try:
                providers[model.name] = _provider(settings, model, label=f"{configured.path}: model {model.name!r}")
            except LocalModelError as error:
                raise ModelsFileError(str(error)) from None
        return cls(configured.models, providers, configured.default, configured.mcp_servers,
                   configured.client_tools)

    def names(self) -> list[str]:
        return list(self._models)

    def entry(self, name: str) -> OpenAIEntry | LocalEntry:
        return self._configured(name).entry

    def calls_tools(self, name: str) -> bool:
        """Whether model `name` may be sent tools (its entry's `tools`: by default an OpenAI-compatible
        model does, an embedded one does not)."""
        return self.entry(name).tools

    def provider(self, name: str) -> ChatProvider:
        self._configured(name)
        return self._providers[name]

    def _configured(self, name: str) -> ConfiguredModel:
        try:
            return self._models[name]
        except KeyError:
            raise UnknownModel(name, self.names()) from None

    def public(self) -> list[dict[str, Any]]:
        """What clients may see of each model: never a key, nor which variable holds it."""
        return [{"name": name, "provider": model.entry.provider, "model": self._providers[name].model,
                 "default": name == self.default, "params": model.entry.params.model_dump(),
                 "tools": model.entry.tools}
                for name, model in self._models.items()]

    def start(self) -> None:
        """Start every provider; an embedded model loads in the background meanwhile."""
        for provider in self._providers.values():
            provider.start()

    def readiness(self) -> str:
        """"ok" when every model is ready, else what is not (named, when there are several)."""
        waiting = {name: state for name, provider in self._providers.items() if (state := provider.readiness()) != "ok"}
        if not waiting:
            return "ok"
        if len(self._providers) == 1:
            return next(iter(waiting.values()))
        return "; ".join(f"{name}: {state}" for name, state in waiting.items())

    async def close(self) -> None:
        """Close every provider, each even when another fails to."""
        results = await asyncio.gather(*(provider.close() for provider in self._providers.values()),
                                       return_exceptions=True)
        for name, result in zip(self._providers, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("provider did not close cleanly", extra={"name": name, "error": repr(result)})


def _model_of_the_variables(settings: Settings) -> ConfiguredModel:
    """The zero-configuration model, named as the provider knows it (what /v1/models showed before)."""
    params = ModelParams(temperature=settings.temperature, max_tokens=settings.max_tokens)
    entry: OpenAIEntry | LocalEntry
    if settings.provider == "openai":
        entry = OpenAIEntry.model_construct(
            name=settings.openai_model, provider="openai", model=settings.openai_model,
            base_url=settings.openai_base_url, api_key_env="OPENAI_API_KEY", default=True, params=params)
        return ConfiguredModel(entry, settings.openai_api_key)
    local = settings.local_model
    # Named by what resolve makes of it: a built-in name, or the whole path of a GGUF file (not a name
    # clients could type, and not checked as one, but it is the only model).
    entry = LocalEntry.model_construct(
        name=resolve_local_model(local).id, provider="local", model=local if local in KNOWN else None,
        path=None if local in KNOWN else Path(local), default=True, params=params)
    return ConfiguredModel(entry)


def _provider(settings: Settings, model: ConfiguredModel, label: str | None = None) -> ChatProvider:
    """The provider of one model; its params are the defaults of its replies."""
    entry, params = model.entry, model.entry.params
    if isinstance(entry, OpenAIEntry):
        assert model.api_key is not None
        return OpenAIProvider(
            api_key=model.api_key, base_url=entry.base_url, model=entry.model,
            max_tokens=params.max_tokens, max_retries=settings.provider_retries,
            read_timeout=settings.provider_timeout, temperature=params.temperature,
            total_timeout=settings.provider_total_timeout,
        )
    if label is None:
        spec = resolve_local_model(entry.source)
    else:
        spec = resolve_local_model(entry.source, f"{label}: {'path' if entry.path is not None else 'model'}")
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelError(f"{NEEDS_RUNTIME}, or set OPENAI_API_KEY" if label is None
                              else f"{label}: provider: {NEEDS_RUNTIME}")
    # Without max_tokens the embedded runtime keeps its own cap (the provider's default).
    limit = {} if params.max_tokens is None else {"max_tokens": params.max_tokens}
    return LocalProvider(spec, models_dir=settings.data_dir / "models", temperature=params.temperature, **limit)

