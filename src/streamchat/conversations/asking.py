"""Asking for a reply, as one unit of work with one undo path.

A send, a regenerate (and an edit) each store messages and an empty reply, count the reply against
its key, may take the conversation's one turn (busy mode `reject`) and queue the event that asks for
the reply. If any part fails (a refusal, a backend away, a shutdown that closed the bus), every part
already done is taken back, so the error answer leaves nothing behind and the client can send again.

The deletion-mark rule (deleting.py) is built in: in an existing conversation the marks are read
before anything is written and compared after the last write; a delete that overlapped finishes here
and the request answers 404.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from streamchat.conversations.deleting import Marks, after_writing, before_writing
from streamchat.conversations.events import REPLY_ASKED, ChatMessageEvent
from streamchat.conversations.messages import FINISHED, ConversationMessage
from streamchat.conversations.replies import answering
from streamchat.conversations.replies.index import forget, remember
from streamchat.conversations.replies.quota import release, reserve
from streamchat.conversations.replies.stopping import stop_reply
from streamchat.framework import OUTAGES, Context, HttpError, Item, Principal
from streamchat.settings import Settings


class ReplyOrder:
    """`async with ReplyOrder(...) as order:` store the messages, then `queue` the reply's event."""

    def __init__(self, ctx: Context, settings: Settings, principal: Principal | None, conversation_id: str,
                 reply_id: str, *, existing: bool, marks: Marks | None = None) -> None:
        self.ctx = ctx
        self.settings = settings
        self.principal = principal
        self.conversation_id = conversation_id
        self.reply_id = reply_id
        self.existing = existing
        self._marks: Marks | None = marks  # as the caller read them, if it did
        self._stored: list[str] = []
        self._took_turn = False
        self._reserved = False
        self._indexed = False

    @property
    def key_id(self) -> str | None:
        return None if self.principal is None else self.principal.key_id

    async def __aenter__(self) -> ReplyOrder:
        """Nothing written yet: the marks are read (404 while a delete runs), the busy mode applied,
        the reply counted against its key (429 at the limit)."""
        try:
            if self.existing:  # a new id is known to nobody yet: no delete can meet it, nothing is busy
                self._marks = await before_writing(self.ctx, self.conversation_id, self._marks)
                self._took_turn = await make_room(self.ctx, self.settings, self.conversation_id, self.reply_id)
            await reserve(self.ctx, self.principal, self.reply_id, self.settings.max_concurrent_replies)
            self._reserved = True
        except BaseException:
            await self._undo()
            raise
        return self

    async def store(self, item_id: str, message: ConversationMessage) -> Item[ConversationMessage]:
        # Counted before the write: a write that fails may still have been announced (on several
        # instances a full store keeps the item to write it later), and the undo must take it back.
        self._stored.append(item_id)
        stored: Item[ConversationMessage] = await self.ctx.streams.conversation.set(
            self.conversation_id, item_id, message)
        return stored

    async def queue(self, event: ChatMessageEvent, details: Mapping[str, Any] | None = None) -> None:
        """Index the reply (with what its protocol keeps beside it), then ask for it."""
        await remember(self.ctx.state, self.reply_id, self.conversation_id, details)
        self._indexed = True
        await self.ctx.emit(REPLY_ASKED, event)

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        if error is not None:
            await self._undo()
            return
        if self._marks is not None:
            await after_writing(self.ctx, self.conversation_id, self._marks)

    async def _undo(self) -> None:
        """Take back every part done, newest first; a part that cannot be undone now (its backend is
        away) is logged and left: the reply's quota entry and busy mark lapse, an item stays."""
        for item_id in reversed(self._stored):
            try:
                await self.ctx.streams.conversation.delete(self.conversation_id, item_id)
            except Exception:
                self.ctx.logger.exception("could not take back a stored message", extra={"messageId": item_id})
        with contextlib.suppress(*OUTAGES):
            if self._indexed:
                await forget(self.ctx.state, [self.reply_id])
            if self._reserved:
                await release(self.ctx, self.key_id, self.reply_id)
            if self._took_turn:
                await answering.free(self.ctx, self.conversation_id, self.reply_id)


async def make_room(ctx: Context, settings: Settings, conversation_id: str, reply_id: str) -> bool:
    """Apply the busy mode to a conversation whose reply is still running or queued; True if
    `reply_id` took the conversation's one reply (reject mode), which the AI step frees.

    enqueue (default): nothing to do, the new reply waits its turn. reject: 409, nothing stored.
    interrupt: stop the unfinished replies first.
    """
    mode = settings.busy_mode
    if mode == "enqueue":
        return False
    busy = [item for item in await ctx.streams.conversation.get_group(conversation_id)
            if item.data.sender == "assistant" and item.data.status not in FINISHED]
    if mode == "reject":
        if busy or not await answering.take(ctx, conversation_id, reply_id):
            answered = f"message {busy[-1].id!r}" if busy else "another message sent at the same time"
            raise HttpError(409, "conversation_busy",
                            f"conversationId {conversation_id!r}: still answering {answered}; wait for it or stop it")
        return True
    for reply in busy:
        await stop_reply(ctx, conversation_id, reply)
    return False
