"""Model providers: `openai` (any OpenAI-compatible server) and `local` (an embedded GGUF model)."""

from __future__ import annotations

from streamchat.llm.base import ChatProvider, ChatTurn, ProviderError, Sampling, TokenCount

__all__ = ["ChatProvider", "ChatTurn", "ProviderError", "Sampling", "TokenCount", "current_provider", "use_provider"]

_provider: ChatProvider | None = None


def use_provider(provider: ChatProvider | None) -> None:
    """Install the provider the AI step talks to (done once by the app at start-up)."""
    global _provider
    _provider = provider


def current_provider() -> ChatProvider:
    if _provider is None:
        raise RuntimeError("no model provider installed; the app sets one at start-up")
    return _provider
