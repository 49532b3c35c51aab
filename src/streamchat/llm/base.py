"""What the AI step needs from a model: stream text for a list of chat turns."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]

#: The system prompt of a chat (instruction-tuned) model unless STREAMCHAT_SYSTEM_PROMPT says otherwise.
INSTRUCTION_PROMPT = ("You are a helpful assistant. Answer accurately and concisely, "
                      "using Markdown for lists and code when it helps.")


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Role
    content: str


def with_system_prompt(turns: Sequence[ChatTurn], default: str) -> Sequence[ChatTurn]:
    """`turns`, opened by `default` as the system turn unless they bring their own."""
    if turns and turns[0].role == "system":
        return turns
    return [ChatTurn("system", default), *turns]


@dataclass(slots=True)
class TokenCount:
    """A reply's tokens as its model counted them, filled in by the provider as the reply ends;
    None where the provider did not say (an OpenAI-compatible server that sends no usage)."""

    prompt: int | None = None
    completion: int | None = None


class ProviderError(Exception):
    """The model could not produce (the rest of) a reply; `reason` is short and safe to show users."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChatProvider(Protocol):
    """A streaming chat model. Transient failures are retried inside; what escapes is a ProviderError."""

    name: str
    #: The model's name as the provider knows it (shown to users and in /api/models).
    model: str

    def start(self) -> None:
        """Begin any preparation (loading a model) in the background; returns at once."""
        ...

    def readiness(self) -> str:
        """"ok", or what is still being prepared (or why it failed): /readyz shows it."""
        ...

    def stream(self, turns: Sequence[ChatTurn], count: TokenCount | None = None) -> AsyncGenerator[str, None]:
        """Yield the reply's text pieces as the model produces them, and put its token counts in
        `count`. Turns that do not open with a system turn get the system prompt that suits the model."""
        ...

    async def close(self) -> None:
        """Release connections, threads or model memory."""
        ...
