"""What a POST /ag-ui asks for: AG-UI's `RunAgentInput`, validated by the protocol's own model
(`ag_ui.core`), read as one of the requests a run can be.

The server keeps the thread's history, so of `messages` only what is new is read: a last `user`
message whose id the thread does not hold is the new turn (the ids a client holds are the server's
own, as its MESSAGES_SNAPSHOT gave them), and `tools` are the front-end tools offered for its reply.
Otherwise the run goes on with a reply that waits: the last `tool` messages (but the server's own,
`<call>.result`) are the client's results for calls of its front-end tools, and `resume` entries
answer the interrupts (approvals) that ended the previous run. `state` and `context` are accepted and
not used (streamchat keeps no agent state, and the conversation's system prompt is its own).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson
from ag_ui.core import ResumeEntry, RunAgentInput, TextPart, ToolMessage, UserMessage
from pydantic import ValidationError, field_validator

from streamchat.conversations.client_results import ClientResult
from streamchat.conversations.messages import ID_PATTERN, checked_message
from streamchat.framework import HttpError
from streamchat.framework.errors import describe_validation
from streamchat.protocols.ag_ui_snapshot import result_id
from streamchat.tools.client_tools import ClientTool

_ID = re.compile(ID_PATTERN)
ID_MAX = 200


def invalid(field: str, message: str, status: int = 422, error: str = "validation_error") -> HttpError:
    """streamchat's error shape (AG-UI has none of its own for HTTP), naming the field in `fields`."""
    return HttpError(status, error, f"{field}: {message}",
                     fields=[{"field": field, "message": message, "type": "value_error"}])


class AgUiRunInput(RunAgentInput):
    """RunAgentInput, with the ids checked as streamchat keeps them: `threadId` is a conversation id and
    `runId` names the run in URLs (1-200 letters, digits, `_ . : -`)."""

    @field_validator("thread_id", "run_id")
    @classmethod
    def _an_id(cls, value: str) -> str:
        if not 1 <= len(value) <= ID_MAX or not _ID.match(value):
            raise ValueError(f"1-{ID_MAX} letters, digits, '_', '.', ':' or '-'")
        return value


@dataclass(frozen=True, slots=True)
class NewTurn:
    """The user's new message: the reply to it is the run; `tools` run in the client."""

    text: str
    tools: list[ClientTool]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A client's result for a call of a front-end tool, from its `tool` message at `where`."""

    call_id: str
    result: ClientResult
    where: str


@dataclass(frozen=True, slots=True)
class GoingOn:
    """Answers for a reply that waits: to the previous run's interrupts (each with its place in
    `resume`), and the client's results for its front-end calls."""

    entries: list[tuple[int, ResumeEntry]]
    results: list[ToolResult]


Asked = NewTurn | GoingOn


def what_is_asked(body: AgUiRunInput, stored: Collection[str]) -> Asked:
    """The request a run input makes, given the ids of the messages the thread holds; 422 naming the field
    when it makes none (or two at once)."""
    messages = body.messages
    last = messages[-1] if messages else None
    new_turn = isinstance(last, UserMessage) and last.id not in stored
    results = _tool_results(messages)
    if body.resume or results:
        if new_turn:
            raise invalid(f"messages[{len(messages) - 1}]", "a run that resumes answers the interrupts; send the new "
                          "user message in a run of its own")
        return GoingOn(list(enumerate(body.resume or ())), results)
    if not isinstance(last, UserMessage):
        raise invalid("messages", "the last message must be the user's new message, or the results of front-end "
                      "tool calls (`tool` messages); or send `resume` to answer the previous run's interrupts")
    if not new_turn:
        raise invalid(f"messages[{len(messages) - 1}].id", f"{last.id!r} is already in the thread: the last "
                      "message must be a new user message")
    return NewTurn(_text_of(last, f"messages[{len(messages) - 1}].content"), _client_tools(body))


def _tool_results(messages: list[Any]) -> list[ToolResult]:
    """The client's results: the `tool` messages after the last message of another role, but the server's
    own (a result it streamed, `<call>.result`)."""
    results = []
    index = len(messages)
    while index > 0 and isinstance(messages[index - 1], ToolMessage):
        index -= 1
    for place in range(index, len(messages)):
        message: ToolMessage = messages[place]
        if message.id != result_id(message.tool_call_id):
            results.append(ToolResult(message.tool_call_id, _result_of(message, f"messages[{place}]"),
                                      f"messages[{place}].toolCallId"))
    return results


def _result_of(message: ToolMessage, where: str) -> ClientResult:
    """A `tool` message as the call's result: its `error`, else its content (JSON when it parses, else the
    text)."""
    if message.error is not None:
        given: dict[str, Any] = {"error": message.error}
    else:
        text = message.content if isinstance(message.content, str) else "\n".join(
            part.text for part in message.content if isinstance(part, TextPart))
        try:
            given = {"output": orjson.loads(text)}
        except orjson.JSONDecodeError:
            given = {"output": text}
    try:
        return ClientResult.model_validate(given)
    except ValidationError as error:
        detail, fields = describe_validation(error, (where,))
        raise HttpError(422, "validation_error", detail, fields=fields) from None


def _client_tools(body: AgUiRunInput) -> list[ClientTool]:
    """The run's front-end tools, as the reply offers them to the model."""
    tools = []
    for index, tool in enumerate(body.tools or ()):
        given: dict[str, Any] = {"name": tool.name, "description": tool.description}
        if tool.parameters is not None:
            given["parameters"] = tool.parameters
        try:
            tools.append(ClientTool.model_validate(given))
        except ValidationError as error:
            detail, fields = describe_validation(error, (f"tools[{index}]",))
            raise HttpError(422, "validation_error", detail, fields=fields) from None
    return tools


def _text_of(message: UserMessage, where: str) -> str:
    """A user message's text: its string, or its text parts joined (other parts are refused by name)."""
    content: Any = message.content
    if isinstance(content, str):
        text = content
    else:
        pieces = []
        for index, part in enumerate(content):
            if not isinstance(part, TextPart):
                raise invalid(f"{where}[{index}]", f"a {part.type} part: streamchat takes text only")
            pieces.append(part.text)
        text = "\n".join(pieces)
    try:
        return checked_message(text)
    except ValueError as error:
        raise invalid(where, str(error)) from None
