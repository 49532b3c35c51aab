"""Model providers: `openai` (any OpenAI-compatible server) and `local` (an embedded GGUF model)."""

from __future__ import annotations

from streamchat.llm.base import (
    ChatProvider,
    ChatTurn,
    ProviderError,
    Sampling,
    TokenCount,
    ToolCall,
    ToolCallDelta,
    ToolSpecs,
)
from streamchat.llm.tool_calls import ToolCallParts

__all__ = ["ChatProvider", "ChatTurn", "ProviderError", "Sampling", "TokenCount", "ToolCall", "ToolCallDelta",
           "ToolCallParts", "ToolSpecs"]
