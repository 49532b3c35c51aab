"""The use cases on conversations, as one service every protocol's steps call.

Built per handler run from its `ctx` (`Conversations(ctx)`): its stream writes carry that run's
lease, and the settings and catalog are the services the app gave the runtime. Each use case that
writes is one unit of work (asking.ReplyOrder for those that ask for a reply) with the ownership
and deletion-mark rules built in, so a step only parses its request and shapes the answer.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from streamchat.catalog import Catalog, Conversation
from streamchat.conversations.asking import ReplyOrder
from streamchat.conversations.deleting import delete_conversation
from streamchat.conversations.events import ChatMessageEvent
from streamchat.conversations.exports import ExportedConversation, as_stored
from streamchat.conversations.messages import FINISHED, ConversationMessage, utc_now
from streamchat.conversations.ownership import claim, require_owner
from streamchat.conversations.records import OWNERS
from streamchat.conversations.replies.stopping import stop_reply
from streamchat.conversations.results import Regenerated, Sent
from streamchat.framework import OUTAGES, Context, HttpError, Item, Principal
from streamchat.llm import ChatTurn
from streamchat.settings import Settings

Items = list[Item[ConversationMessage]]


def no_such_conversation(cid: str) -> HttpError:
    return HttpError(404, "not_found", f"conversationId {cid!r}: no such conversation")


def no_such_message(cid: str, mid: str) -> HttpError:
    return HttpError(404, "not_found", f"messageId {mid!r}: no such message in conversation {cid!r}")


class Conversations:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.service(Settings)
        self.catalog = ctx.service(Catalog)
        self.stream = ctx.streams.conversation

    async def read(self, principal: Principal | None, cid: str) -> tuple[Conversation | None, Items]:
        """The caller's conversation: its record (None for one kept without) and messages; 404 otherwise."""
        await require_owner(self.ctx, cid, principal)
        record = await self.catalog.get(cid)
        items = await self.stream.get_group(cid)
        if record is None and not items:
            raise no_such_conversation(cid)
        return record, items

    async def send(self, principal: Principal | None, message: str, conversation_id: str | None = None, *,
                   earlier: Sequence[ChatTurn] = (), instructions: str | None = None,
                   details: Mapping[str, Any] | None = None) -> Sent:
        """What every protocol's "send" does: store the message (after `earlier` turns a client sent
        along, for a new conversation) and an empty reply, and ask for the reply.

        An id that is another key's, or one being deleted, is a 404; the busy mode and the key's reply
        limit apply; a failure keeps nothing of it. `details` are kept beside the reply in the reply index.
        """
        existing = conversation_id is not None
        cid = conversation_id or str(uuid.uuid4())
        user_id, reply_id = str(uuid.uuid4()), str(uuid.uuid4())
        if not await claim(self.ctx.state, cid, principal):
            raise no_such_conversation(cid)
        earlier_ids = [str(uuid.uuid4()) for _ in earlier]
        now = utc_now()
        async with ReplyOrder(self.ctx, self.settings, principal, cid, reply_id, existing=existing) as order:
            for earlier_id, turn in zip(earlier_ids, earlier, strict=True):
                await order.store(earlier_id, ConversationMessage(
                    message=turn.content, sender="user" if turn.role == "user" else "assistant", status="completed",
                    timestamp=now))
            await order.store(user_id, ConversationMessage(message=message, sender="user", status="completed",
                                                           timestamp=now))
            await order.store(reply_id, ConversationMessage(message="", sender="assistant", status="created",
                                                            timestamp=now))
            await order.queue(ChatMessageEvent(
                message=message, conversationId=cid, assistantMessageId=reply_id, userMessageId=user_id,
                keyId=order.key_id, instructions=instructions), details)
        await self._list(cid, order.key_id, user_id, message, now, zip(earlier_ids, earlier, strict=True))
        self.ctx.logger.info("message received", extra={"conversationId": cid})
        return Sent(cid, user_id, reply_id)

    async def _list(self, cid: str, key_id: str | None, user_id: str, message: str, now: str,
                    earlier: Any) -> None:
        """The conversation list's record and search text, after the reply was asked for: the reply
        need not wait for them, and a failure here keeps the message (an error would make the client
        send it twice); the list catches up with the next message."""
        try:
            await self.catalog.touch(cid, key_id, user_id, message, now)
            for earlier_id, turn in earlier:
                await self.catalog.index(cid, earlier_id, turn.content)
        except OUTAGES as error:
            self.ctx.logger.warning("could not update the conversation list", extra={
                "conversationId": cid, "error": str(error)})

    async def regenerate(self, principal: Principal | None, cid: str, mid: str | None) -> Regenerated:
        """A new reply to the user turn that assistant message `mid` answered (None: the last assistant
        message), as every protocol's "regenerate" does it."""
        await require_owner(self.ctx, cid, principal)
        items = await self.stream.get_group(cid)
        if mid is None:
            last = next((item for item in reversed(items) if item.data.sender == "assistant"), None)
            if last is None:
                raise HttpError(404, "not_found", f"conversationId {cid!r}: no reply to regenerate")
            mid = last.id
        position = next((index for index, item in enumerate(items) if item.id == mid), None)
        if position is None:
            raise no_such_message(cid, mid)
        target = items[position]
        if target.data.sender != "assistant":
            raise HttpError(409, "conflict", f"messageId {mid!r}: only an assistant message can be regenerated")
        if target.data.status not in FINISHED:
            raise HttpError(409, "conflict", f"messageId {mid!r}: still {target.data.status}; stop it first")
        turn = next((item for item in reversed(items[:position]) if item.data.sender == "user"), None)
        if turn is None:
            raise HttpError(409, "conflict", f"messageId {mid!r}: answers no user message")
        reply_id = str(uuid.uuid4())
        async with ReplyOrder(self.ctx, self.settings, principal, cid, reply_id, existing=True) as order:
            await order.store(reply_id, ConversationMessage(message="", sender="assistant", status="created",
                                                            timestamp=utc_now()))
            await order.queue(ChatMessageEvent(
                message=turn.data.message, conversationId=cid, assistantMessageId=reply_id, userMessageId=turn.id,
                keyId=order.key_id))
        return Regenerated(conversationId=cid, assistantMessageId=reply_id, userMessageId=turn.id)

    async def stop(self, principal: Principal | None, cid: str, mid: str) -> Item[ConversationMessage]:
        """End a streaming or queued reply now, keeping its text; the item as it ended."""
        await require_owner(self.ctx, cid, principal)
        reply = await self.stream.get(cid, mid)
        if reply is None:
            raise no_such_message(cid, mid)
        if reply.data.status in FINISHED:
            raise HttpError(409, "conflict", f"messageId {mid!r}: already {reply.data.status}, nothing to stop")
        await self.stop_reply(cid, reply)
        self.ctx.logger.info("stop requested", extra={"conversationId": cid, "messageId": mid})
        return await self.stream.get(cid, mid) or reply

    async def stop_reply(self, cid: str, reply: Item[ConversationMessage]) -> None:
        """Stop a reply the caller may stop, wherever it runs (a cancel in another protocol's terms)."""
        await stop_reply(self.ctx, cid, reply)

    async def delete(self, principal: Principal | None, cid: str) -> int:
        """The conversation and everything of it, gone; how many messages went."""
        await require_owner(self.ctx, cid, principal)
        if not await self.stream.get_group(cid) and await self.catalog.get(cid) is None:
            raise no_such_conversation(cid)
        count = await delete_conversation(self.ctx, cid)
        self.ctx.logger.info("conversation deleted", extra={"conversationId": cid, "messages": count})
        return count

    async def rename(self, principal: Principal | None, cid: str, title: str) -> Conversation:
        await require_owner(self.ctx, cid, principal)
        record = await self.catalog.rename(cid, title)
        if record is None:
            raise no_such_conversation(cid)
        self.ctx.logger.info("conversation renamed", extra={"conversationId": cid})
        return record

    async def bring_in(self, principal: Principal | None, exported: ExportedConversation) -> Conversation:
        """A conversation exported as JSON, stored again: under its own id when that is free (nor
        another key's), else under a new one. If storing fails part-way, what was stored is removed."""
        owner = None if principal is None else principal.key_id
        messages = [as_stored(message) for message in exported.messages]
        texts = {message.id: data.message for message, data in zip(exported.messages, messages, strict=True)
                 if data.message and data.status in ("completed", "stopped")}
        now = utc_now()
        first = exported.messages[0].timestamp if exported.messages else now
        last = exported.messages[-1].timestamp if exported.messages else now
        record = Conversation("", exported.title, exported.createdAt or first, exported.updatedAt or last, owner)
        cid = exported.conversationId
        if cid is None or not await self._take(cid, record, texts, principal):
            cid = str(uuid.uuid4())
            await self._take(cid, record, texts, principal)
        try:
            for message, data in zip(exported.messages, messages, strict=True):
                await self.stream.set(cid, message.id, data)
        except BaseException:
            await self.stream.delete_group(cid)
            await self.catalog.remove(cid)
            await self.ctx.state.delete(OWNERS, cid)
            raise
        self.ctx.logger.info("conversation imported", extra={"conversationId": cid, "messages": len(messages)})
        # Deleted again already (a DELETE at this very instant): it was imported all the same.
        return await self.catalog.get(cid) or dataclasses.replace(record, conversation_id=cid)

    async def _take(self, cid: str, record: Conversation, texts: dict[str, str], principal: Principal | None) -> bool:
        """Make `cid` this import's, if nobody uses it: owned by the caller, and its record written.

        A conversation in use is left alone before anything is claimed (claiming first would make an
        unowned conversation, one written while the server ran without keys, the importer's)."""
        if await self.stream.get_group(cid) or await self.catalog.get(cid) is not None:
            return False
        if not await claim(self.ctx.state, cid, principal):
            return False  # another key's
        return await self.catalog.restore(
            Conversation(cid, record.title, record.created_at, record.updated_at, record.owner), texts)
