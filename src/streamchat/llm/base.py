"""What the AI step needs from a model: stream text for a list of chat turns."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Role
    content: str


class ProviderError(Exception):
    """The model could not produce (the rest of) a reply; `reason` is short and safe to show users."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChatProvider(Protocol):
    """A streaming chat model. Transient failures are retried inside; what escapes is a ProviderError."""

    name: str

    def stream(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        """Yield the reply's text pieces as the model produces them."""
        ...

    async def close(self) -> None:
        """Release connections, threads or model memory."""
        ...
