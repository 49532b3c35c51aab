"""The messages an OpenAI request carries (Responses `input`, Chat Completions `messages`) as chat turns.

System and developer messages become the reply's instructions; user and assistant messages are
turns; the last must be the user's (the message answered). Only text is taken: any other content
part is refused with a 400 naming it, rather than silently dropped. A Responses `input` may instead
answer what a response waits for, which continues a reply rather than start one: approval requests
(`mcp_approval_response` items) and the client's function calls (`function_call_output` items; the
`function_call` items a client keeps in its history are read past).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from streamchat.conversations.messages import checked_message
from streamchat.llm import ChatTurn
from streamchat.protocols.openai_errors import invalid

Role = Literal["system", "developer", "user", "assistant", "tool"]
TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class InputMessage(BaseModel):
    """One message: `content` a string or a list of text parts. A Chat Completions `tool` message is
    a function call's output (`tool_call_id` names the call); an assistant message's `tool_calls` are
    the calls it made."""

    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[ContentPart] | None = None
    tool_call_id: str | None = Field(default=None, max_length=300)


class ApprovalAnswer(BaseModel):
    """An `mcp_approval_response` item: the user's answer to an `mcp_approval_request` (whose id is the
    call's item id in the conversation)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["mcp_approval_response"]
    approval_request_id: str = Field(min_length=1)
    approve: bool
    reason: str | None = Field(default=None, max_length=2000, description="Told to the model with a denial.")
    id: str | None = Field(default=None, description="Accepted and ignored.")


class FunctionOutput(BaseModel):
    """A `function_call_output` item: what the client's run of a function call (a `function_call`
    output item, whose `call_id` is the call's item id in the conversation) gave."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=300)
    output: str | list[ContentPart] = Field(description="Text (JSON text is read as the JSON it holds), or "
                                            "`input_text` parts.")
    id: str | None = Field(default=None, description="Accepted and ignored.")
    status: str | None = Field(default=None, description="Accepted and ignored.")


class FunctionCallEcho(BaseModel):
    """A `function_call` item sent back in the input, as clients that keep the whole history do: the
    server has it already."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function_call"]
    call_id: str


_KINDS = {"mcp_approval_response": "approval", "function_call_output": "output", "function_call": "call"}


def _kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return _KINDS.get(kind, "message") if isinstance(kind, str) else "message"


#: One item of a Responses `input` list: a message, an answer to an approval request, a function
#: call's output, or a function call of the history.
InputItem = Annotated[Annotated[InputMessage, Tag("message")] | Annotated[ApprovalAnswer, Tag("approval")]
                      | Annotated[FunctionOutput, Tag("output")] | Annotated[FunctionCallEcho, Tag("call")],
                      Discriminator(_kind)]
AnyItem = InputMessage | ApprovalAnswer | FunctionOutput | FunctionCallEcho


_ITEMS: TypeAdapter[list[AnyItem]] = TypeAdapter(list[InputItem])
#: What pydantic puts in an error's location for a union's branch (not a field of the input).
_BRANCHES = frozenset({"message", "approval", "output", "call", "str", "list[ContentPart]"})


def checked_items(value: Any, field: str) -> Any:
    """A list of input items, checked item by item so that an error names the item and its field
    (`input[0].approve`) rather than the branches of the union it failed; anything else unchanged."""
    if not isinstance(value, list):
        return value
    try:
        return _ITEMS.validate_python(value)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = field
        for part in first["loc"]:
            if isinstance(part, int):
                where += f"[{part}]"
            elif part not in _BRANCHES and "[" not in part:
                where += f".{part}"
        raise ValueError(f"{where}: {first['msg']}") from None


def answers_in(items: Sequence[AnyItem]) -> list[tuple[int, ApprovalAnswer]]:
    """The approval answers among `items`, each with its index in the list."""
    return [(index, item) for index, item in enumerate(items) if isinstance(item, ApprovalAnswer)]


def outputs_in(items: Sequence[AnyItem]) -> list[tuple[int, FunctionOutput]]:
    """The function calls' outputs among `items`, each with its index in the list."""
    return [(index, item) for index, item in enumerate(items) if isinstance(item, FunctionOutput)]


def output_value(output: str | list[ContentPart], where: str) -> Any:
    """A function call's output as the call's result: the JSON a text holds, else the text itself (the
    model reads the result as JSON, so JSON text is not quoted again)."""
    if isinstance(output, list):
        texts: list[str] = []
        for index, part in enumerate(output):
            if part.type not in TEXT_PARTS or part.text is None:
                raise invalid(f"{where}[{index}].type", f"only text output is supported, not {part.type!r}")
            texts.append(part.text)
        output = "".join(texts)
    try:
        return orjson.loads(output)
    except orjson.JSONDecodeError:
        return output


@dataclass(frozen=True, slots=True)
class Conversation:
    instructions: str | None
    earlier: list[ChatTurn]
    message: str


def as_turns(messages: Sequence[InputMessage], field: str, instructions: str | None = None) -> Conversation:
    """The messages as a new conversation's turns. Earlier tool calls and their outputs (an assistant
    message's `tool_calls`, `tool` messages) are not carried: only the text around them."""
    system: list[str] = [instructions] if instructions else []
    turns: list[ChatTurn] = []
    for index, message in enumerate(messages):
        if message.role == "tool":
            continue
        text = _text(message, f"{field}[{index}]")
        if message.role in ("system", "developer"):
            system.append(text)
        elif text.strip():
            turns.append(ChatTurn("user" if message.role == "user" else "assistant", text))
    if not turns or turns[-1].role != "user":
        raise invalid(field, "the last message must be the user's (the one to answer)")
    try:
        last = checked_message(turns[-1].content)
    except ValueError as error:
        raise invalid(field, str(error)) from None
    return Conversation("\n\n".join(system) or None, turns[:-1], last)


def _text(message: InputMessage, where: str) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts: list[str] = []
    for index, part in enumerate(message.content):
        if part.type not in TEXT_PARTS or part.text is None:
            raise invalid(f"{where}.content[{index}]", f"only text content is supported, not {part.type!r}")
        texts.append(part.text)
    return "".join(texts)
