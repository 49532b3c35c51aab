"""A reply's tool calls as the AI SDK's tool chunks, in the dialect of the client's `ai` version.

Every version from 5.0.0 reads `tool-input-start` / `-delta` / `-available` and `tool-output-available`
/ `-error`; only `ai` 6 and later know `tool-input-error`, `tool-approval-request`, `tool-output-denied`
and a `finish` with its `finishReason`, and 5.0.0 refuses a chunk with any field it does not define.
So a stream speaks the 5.0.0 subset unless the request says it comes from `ai` 6 or later, in the
header `X-AI-SDK-Version` (the major version, or the whole version: "6", "7.0.185"). A chunk's
`toolCallId` and an approval's `approvalId` are the call's item id (unique in its conversation, where
the model's own ids need not be), so an approval or an output the client sends back names the item
to answer. A call of a tool that runs in the client (`awaiting_result`) is shown up to its
`tool-input-available`, in every version: that is the client's cue to run it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from streamchat.conversations.messages import FINISHED, ConversationMessage
from streamchat.conversations.replies.waiting import WAITING
from streamchat.conversations.tool_calls import what_the_model_reads
from streamchat.framework import HttpError

VERSION_HEADER = "x-ai-sdk-version"
_VERSION = re.compile(r"^\s*v?(\d+)(?:\.\d+)*\S*\s*$")
#: The client part states after which a call's input, approval request or outcome is already there.
_INPUT_SHOWN = {"input-available", "approval-requested", "approval-responded", "output-available", "output-error",
                "output-denied"}
_APPROVAL_SHOWN = {"approval-requested", "approval-responded", "output-denied"}
_OUTCOME_SHOWN = {"output-available", "output-error", "output-denied"}


@dataclass(frozen=True, slots=True)
class UiDialect:
    """What the client's `ai` version understands beyond 5.0.0's chunks."""

    major: int = 5

    @property
    def approvals(self) -> bool:
        """`tool-approval-request` / `tool-output-denied`, and answering approvals with the chat's messages."""
        return self.major >= 6

    @property
    def input_errors(self) -> bool:
        """`tool-input-error` and `finish.finishReason`."""
        return self.major >= 6

    def finish(self, reason: str) -> dict[str, Any]:
        """The `finish` chunk, with its reason where the version reads one."""
        return {"type": "finish", "finishReason": reason} if self.input_errors else {"type": "finish"}


def dialect_of(headers: dict[str, str]) -> UiDialect:
    """The dialect a request asks for; 422 naming the header when it is not a version."""
    value = headers.get(VERSION_HEADER)
    if value is None:
        return UiDialect()
    match = _VERSION.match(value)
    if match is None:
        detail = f"X-AI-SDK-Version: {value!r} is not an `ai` version (e.g. 6 or 6.0.1)"
        raise HttpError(422, "validation_error", detail,
                        fields=[{"field": "X-AI-SDK-Version", "message": detail, "type": "value_error"}])
    return UiDialect(int(match.group(1)))


def chunk(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _arguments_value(text: str) -> tuple[bool, Any]:
    """(True, the JSON value) for arguments that are JSON (no text: no arguments), else (False, the text)."""
    try:
        return True, orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return False, text


def _written_out(call: ConversationMessage) -> bool:
    """Whether the model has finished the call's arguments: a call that left `pending` was checked at its
    round's end; a pending one is whole once its text is a JSON object (the closing brace comes last)."""
    if call.status != "pending":
        return True
    try:
        return isinstance(orjson.loads(call.arguments or ""), dict)
    except orjson.JSONDecodeError:
        return False


class CallParts:
    """One call's chunks: what the client has of it, so each state is sent once and in order."""

    def __init__(self, call_id: str, round_number: int) -> None:
        self.call_id = call_id
        self.round = round_number
        self.status = "pending"
        self.started = False
        self.arguments_sent = 0
        self.input_sent = False
        self.approval_sent = False
        self.outcome_sent = False

    @classmethod
    def as_the_client_has_it(cls, call_id: str, state: str) -> CallParts:
        """A call the client already shows in `state` (a tool part's state in its message)."""
        parts = cls(call_id, 0)
        if state in _INPUT_SHOWN:  # one still streaming its input is sent again from its start
            parts.started = parts.input_sent = True
        parts.approval_sent = state in _APPROVAL_SHOWN
        parts.outcome_sent = state in _OUTCOME_SHOWN
        return parts

    @property
    def is_new(self) -> bool:
        return not self.started

    @property
    def waits_for_approval(self) -> bool:
        return self.status == "awaiting_approval"

    @property
    def waits_for_result(self) -> bool:
        """A call of a tool that runs in the client, waiting for the client's result."""
        return self.status == "awaiting_result"

    @property
    def settled(self) -> bool:
        """Whether the call no longer runs (ended, or waiting for someone's answer)."""
        return self.status in FINISHED or self.status in WAITING

    def arguments(self, piece: str) -> bytes:
        """More of the arguments, while the client still reads them as they stream."""
        if not self.started or self.input_sent or not piece:
            return b""
        self.arguments_sent += len(piece)
        return chunk({"type": "tool-input-delta", "toolCallId": self.call_id, "inputTextDelta": piece})

    def update(self, call: ConversationMessage, dialect: UiDialect) -> bytes:
        """The chunks that bring the client from what it has to the call as it is now."""
        self.status = call.status
        self.round = call.round or 0
        name, text = call.name or "", call.arguments or ""
        frames: list[bytes] = []
        if not self.started:
            self.started = True
            frames.append(chunk({"type": "tool-input-start", "toolCallId": self.call_id, "toolName": name}))
        if not self.input_sent:
            if len(text) > self.arguments_sent:
                frames.append(chunk({"type": "tool-input-delta", "toolCallId": self.call_id,
                                     "inputTextDelta": text[self.arguments_sent:]}))
                self.arguments_sent = len(text)
            if not _written_out(call):
                return b"".join(frames)
            frames.append(self._input(call, name, text, dialect))
        if call.status == "awaiting_approval" or (call.status == "denied" and dialect.approvals):
            frames.append(self._approval_request(dialect))
        if call.status in FINISHED and not self.outcome_sent:
            self.outcome_sent = True
            frames.append(self._outcome(call, dialect))
        return b"".join(frames)

    def _input(self, call: ConversationMessage, name: str, text: str, dialect: UiDialect) -> bytes:
        self.input_sent = True
        is_json, value = _arguments_value(text)
        if not is_json and dialect.input_errors:
            self.outcome_sent = True  # the client shows the call failed with this; no outcome follows
            return chunk({"type": "tool-input-error", "toolCallId": self.call_id, "toolName": name, "input": value,
                          "errorText": call.error or (what_the_model_reads(call) if call.status == "cancelled"
                                                      else "the arguments are not JSON")})
        return chunk({"type": "tool-input-available", "toolCallId": self.call_id, "toolName": name, "input": value})

    def _approval_request(self, dialect: UiDialect) -> bytes:
        if self.approval_sent or not dialect.approvals:
            return b""
        self.approval_sent = True
        return chunk({"type": "tool-approval-request", "approvalId": self.call_id, "toolCallId": self.call_id})

    def _outcome(self, call: ConversationMessage, dialect: UiDialect) -> bytes:
        if call.status == "completed":
            return chunk({"type": "tool-output-available", "toolCallId": self.call_id, "output": call.result})
        if call.status == "denied" and dialect.approvals:
            return chunk({"type": "tool-output-denied", "toolCallId": self.call_id})
        return chunk({"type": "tool-output-error", "toolCallId": self.call_id,
                      "errorText": call.error if call.status == "error" and call.error
                      else what_the_model_reads(call)})


@dataclass(frozen=True, slots=True)
class ClientCopy:
    """What a client already shows of a reply (the assistant message it sends back): how much of its
    text, and each tool part's state by call id. A stream to it goes on from there."""

    text_length: int
    call_states: dict[str, str]

    def calls(self) -> Iterable[CallParts]:
        return (CallParts.as_the_client_has_it(call_id, state) for call_id, state in self.call_states.items())
