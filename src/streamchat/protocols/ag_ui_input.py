"""What a POST /ag-ui asks for: AG-UI's `RunAgentInput`, validated by the protocol's own model
(`ag_ui.core`), read as one of the requests a run can be.

The server keeps the thread's history, so of `messages` only what is new is read: a last `user`
message whose id the thread does not hold is the new turn (the ids a client holds are the server's
own, as its MESSAGES_SNAPSHOT gave them); `resume` entries answer the interrupts that ended the
thread's previous run instead. `state` and `context` are accepted and not used (streamchat keeps no
agent state, and the conversation's system prompt is its own).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ag_ui.core import ResumeEntry, RunAgentInput, TextPart, UserMessage
from pydantic import field_validator

from streamchat.conversations.messages import ID_PATTERN, checked_message
from streamchat.framework import HttpError

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
    """The user's new message: the reply to it is the run."""

    text: str


@dataclass(frozen=True, slots=True)
class Answers:
    """Answers to the interrupts of the thread's previous run (each with its place in `resume`)."""

    entries: list[tuple[int, ResumeEntry]]


Asked = NewTurn | Answers


def what_is_asked(body: AgUiRunInput, stored: Collection[str]) -> Asked:
    """The request a run input makes, given the ids of the messages the thread holds; 422 naming the field
    when it makes none (or two at once)."""
    messages = body.messages
    last = messages[-1] if messages else None
    new_turn = isinstance(last, UserMessage) and last.id not in stored
    if body.resume:
        if new_turn:
            raise invalid(f"messages[{len(messages) - 1}]", "a run that resumes answers the interrupts; send the new "
                          "user message in a run of its own")
        return Answers(list(enumerate(body.resume)))
    if not isinstance(last, UserMessage):
        raise invalid("messages", "the last message must be the user's new message (or send `resume` to answer "
                      "the previous run's interrupts)")
    if not new_turn:
        raise invalid(f"messages[{len(messages) - 1}].id", f"{last.id!r} is already in the thread: the last "
                      "message must be a new user message")
    return NewTurn(_text_of(last, f"messages[{len(messages) - 1}].content"))


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
