"""Model providers: `openai` (any OpenAI-compatible server) and `local` (an embedded GGUF model)."""

from __future__ import annotations

from streamchat.llm.base import ChatProvider, ChatTurn, ProviderError, Sampling, TokenCount

__all__ = ["ChatProvider", "ChatTurn", "ProviderError", "Sampling", "TokenCount"]
