"""Which conversation a reply belongs to, looked up by the reply's id.

A protocol that names replies rather than conversations (an OpenAI response id is a reply id)
finds its conversation here. Written when the reply is asked for, with whatever the asking
protocol keeps beside it (a response's instructions and metadata); removed with the conversation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamchat.conversations.records import REPLY_INDEX
from streamchat.framework import State


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    conversation_id: str
    details: Mapping[str, Any] = field(default_factory=dict)


async def remember(state: State, reply_id: str, conversation_id: str, details: Mapping[str, Any] | None = None) -> None:
    await state.set(REPLY_INDEX, reply_id, {"conversationId": conversation_id, "details": dict(details or {})})


async def locate(state: State, reply_id: str) -> ReplyRecord | None:
    record = await state.get(REPLY_INDEX, reply_id)
    if record is None:
        return None
    return ReplyRecord(str(record["conversationId"]), record.get("details") or {})


async def forget(state: State, reply_ids: Iterable[str]) -> None:
    for reply_id in reply_ids:
        await state.delete(REPLY_INDEX, reply_id)
