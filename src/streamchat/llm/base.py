"""What the AI step needs from a model: stream text (and tool calls) for a list of chat turns."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, overload

Role = Literal["system", "user", "assistant", "tool"]
#: The OpenAI `tools` list of a request: `{"type": "function", "function": {name, description, parameters}}`.
ToolSpecs = Sequence[Mapping[str, Any]]

#: The system prompt of a chat (instruction-tuned) model unless STREAMCHAT_SYSTEM_PROMPT says otherwise.
INSTRUCTION_PROMPT = ("You are a helpful assistant. Answer accurately and concisely, "
                      "using Markdown for lists and code when it helps.")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A whole tool call the model made: `arguments` is its JSON text, as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """One streamed piece of a tool call, as OpenAI streams them: the call's `id` and `name` come with
    its first piece, its `arguments` text is split across pieces, and the calls of one turn share the
    stream, told apart by `index`. Text pieces stay plain `str`, so the text path allocates nothing more."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One message of the history. An assistant turn may carry the `tool_calls` it made (its `content`
    is then the text before them, often empty); a "tool" turn is one call's result, `tool_call_id`
    naming the call."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


def with_system_prompt(turns: Sequence[ChatTurn], default: str) -> Sequence[ChatTurn]:
    """`turns`, opened by `default` as the system turn unless they bring their own."""
    if turns and turns[0].role == "system":
        return turns
    return [ChatTurn("system", default), *turns]


@dataclass(frozen=True, slots=True)
class Sampling:
    """One request's generation settings (a conversation's or a model's); None keeps the provider's
    own default, so an unset limit sends none to a server that has no reason to cut a reply short."""

    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(slots=True)
class TokenCount:
    """How a reply ended, as its model told it, filled in by the provider as the reply ends; None
    where the provider did not say (an OpenAI-compatible server that sends no usage).

    `finish_reason` is "stop" (the model ended its turn), "length" (a token limit cut the reply
    short), "tool_calls" (the model stopped to call tools), or whatever else the provider said
    ("content_filter", ...)."""

    prompt: int | None = None
    completion: int | None = None
    finish_reason: str | None = None


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

    @overload
    def stream(
        self, turns: Sequence[ChatTurn], count: TokenCount | None = None, sampling: Sampling | None = None,
        tools: None = None,
    ) -> AsyncGenerator[str, None]: ...

    @overload
    def stream(
        self, turns: Sequence[ChatTurn], count: TokenCount | None = None, sampling: Sampling | None = None,
        tools: ToolSpecs | None = None,
    ) -> AsyncGenerator[str | ToolCallDelta, None]: ...

    def stream(
        self, turns: Sequence[ChatTurn], count: TokenCount | None = None, sampling: Sampling | None = None,
        tools: ToolSpecs | None = None,
    ) -> AsyncGenerator[str | ToolCallDelta, None]:
        """Yield the reply's text pieces as the model produces them, and with `tools` (OpenAI's `tools`
        list; none is sent when empty) the pieces of the tool calls it makes; put its token counts and
        finish reason in `count`. `sampling`'s values override the provider's defaults for this reply.
        Turns that do not open with a system turn get the system prompt that suits the model.
        A provider whose model cannot call tools refuses `tools` with a ProviderError."""
        ...

    async def close(self) -> None:
        """Release connections, threads or model memory."""
        ...
