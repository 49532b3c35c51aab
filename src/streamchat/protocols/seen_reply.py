"""What a protocol view has seen of one reply: the reply, its text's pieces as the model wrote them, and
its calls round by round in the order the model made them (and which of them are whole).

The views that lay a reply out in an order fixed by what is stored (the Responses, ChatKit and AG-UI
layouts) are fed the same events (a group watch's, or a snapshot's) and read them the same way; they
extend `SeenReply` and differ only in what they give for it. The view's own `done` says whether it has
laid out all it will: a call item removed after that no longer matters. `follow` feeds a view from a
group watch, the same loop for every protocol's stream.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Generic, TypeVar

from streamchat.conversations.messages import FINISHED, ConversationMessage
from streamchat.conversations.tool_calls import call_index
from streamchat.framework import Context, ItemGone, ItemState, Quiet, TextDelta
from streamchat.framework.streams.changes import TEXT_FIELD
from streamchat.protocols.following import text_pieces

#: Why a reply can no longer be followed once its conversation is gone.
DELETED = "the conversation was deleted"
#: How long a view waits, once its reply has ended, for calls of it that have not (then it gives up on them).
CALL_END_WAIT_SECONDS = 30.0

#: A view's event (each protocol has its own).
E = TypeVar("E")
Seen = ItemState[ConversationMessage] | TextDelta | ItemGone | Quiet


class SeenReply(ABC, Generic[E]):
    def __init__(self, ctx: Context, reply_id: str, *, as_written: bool) -> None:
        self.ctx = ctx
        self.reply_id = reply_id
        self.as_written = as_written
        #: What has been seen: the reply, its text's pieces, its calls (and which are whole).
        self.reply: ConversationMessage | None = None
        self.pieces: list[str] = []
        self.known = 0
        self.calls: dict[str, ConversationMessage] = {}
        self.whole: set[str] = set()
        #: Each round's calls by id, in the order the model made them.
        self._rounds: dict[int, list[str]] = {}
        #: How far the view has taken the text: pieces, and characters.
        self._taken = 0
        self._position = 0
        #: Why the reply can no longer be followed (deleted, or started again); None while it can.
        self.lost: str | None = None

    @property
    @abstractmethod
    def done(self) -> bool:
        """Whether the view has given all it will for the reply."""

    @abstractmethod
    async def advance(self) -> list[E]:
        """The events that follow from what has been seen, past those already given."""

    @property
    def through(self) -> bool:
        """Whether following the reply further gives this view nothing: it is done, or the reply is lost."""
        return self.done or self.lost is not None

    async def absorb(self, event: Seen) -> None:
        if isinstance(event, TextDelta):  # first: by far the most frequent
            if event.item_id == self.reply_id and event.field == TEXT_FIELD:
                self.pieces.append(event.text)
                self.known += len(event.text)
            return  # a call's arguments: shown whole, from its item
        if isinstance(event, Quiet):
            return
        if isinstance(event, ItemGone):
            if event.item_id == self.reply_id:
                self.lost = DELETED
            elif (gone := self.calls.pop(event.item_id, None)) is not None:
                self._rounds[gone.round or 0].remove(event.item_id)
                if not self.done:
                    self.lost = "a round of the reply was run again"
            return
        data = event.data
        if event.item_id == self.reply_id:
            await self._reply_is(data)
        elif data.is_tool_call and data.parentId == self.reply_id:
            # A call's first write after it appeared (or a state past pending) comes once the model has
            # written all of it: its round ended and the call was checked.
            seen = event.item_id in self.calls
            if seen or data.status != "pending":
                self.whole.add(event.item_id)
            if not seen:
                made = self._rounds.setdefault(data.round or 0, [])
                made.append(event.item_id)
                made.sort(key=call_index)
            self.calls[event.item_id] = data

    async def _reply_is(self, message: ConversationMessage) -> None:
        text = message.message
        if len(text) < self.known:
            self.lost = "the reply was started again from the beginning"
            return
        if len(text) > self.known:
            self.pieces += await text_pieces(self.ctx, self.reply_id, text, self.known, self.as_written)
            self.known = len(text)
        self.reply = message

    def give_up(self) -> None:
        """The reply ended long ago but some of its calls never did (their run was lost): they are taken
        as they stand, ended as cancelled, so the view can end."""
        for call_id, call in self.calls.items():
            self.whole.add(call_id)
            if call.status not in FINISHED:
                self.calls[call_id] = call.model_copy(update={"status": "cancelled",
                                                              "error": "the call did not end with its reply"})

    @property
    def waits_after_the_end(self) -> bool:
        """Whether the reply has ended but the view has not (it waits for the reply's calls to end)."""
        return not self.done and self.lost is None and self.reply is not None and self.reply.status in FINISHED

    def _round_calls(self, number: int) -> list[str]:
        return self._rounds.get(number, [])

    def _text_end(self, number: int) -> int | None:
        """Where round `number`'s text ends, once that is known: where its calls were checked (all of its
        text came before them), or the reply's end for its last round."""
        assert self.reply is not None
        for call_id in self._round_calls(number):
            call = self.calls[call_id]
            if call_id in self.whole and call.status != "cancelled":
                return call.offset or 0
        # Calls cancelled as their round was cut keep the offset where they began: the round's text is
        # everything the reply holds, which is known once the reply has ended.
        return len(self.reply.message) if self.reply.status in FINISHED else None

    def _take_text(self, end: int | None) -> list[str]:
        """The pieces past those already taken, up to `end` (all there are while it is not known yet). A
        round's text can end inside a piece the model wrote: that piece is split there, so the next round
        starts with its rest."""
        taken: list[str] = []
        while self._taken < len(self.pieces) and (end is None or self._position < end):
            piece = self.pieces[self._taken]
            if end is not None and self._position + len(piece) > end:
                piece, rest = piece[:end - self._position], piece[end - self._position:]
                self.pieces[self._taken:self._taken + 1] = [piece, rest]
            taken.append(piece)
            self._taken += 1
            self._position += len(piece)
        return taken

    def _took_text_to(self, end: int | None) -> bool:
        """Whether the text up to `end` is all taken (never while `end` is not known)."""
        return end is not None and self._position >= end


async def follow(view: SeenReply[E], snapshot: Iterable[ItemState[ConversationMessage]],
                 changes: AsyncIterable[Seen]) -> AsyncIterator[E | Quiet]:
    """The view's events from a group watch's snapshot and then its changes (`Quiet` passed on, for the
    stream's keepalive), until the view is `through` or the changes end (the server stops). Calls that
    have not ended `CALL_END_WAIT_SECONDS` after their reply did are given up on, so the view can end."""
    for state in snapshot:
        await view.absorb(state)
    if view.reply is None:
        return
    for event in await view.advance():
        yield event
    if view.through:
        return
    ended_at: float | None = None
    async for change in changes:
        if isinstance(change, Quiet):
            yield change
        await view.absorb(change)
        if view.waits_after_the_end:
            ended_at = ended_at if ended_at is not None else time.monotonic()
            if time.monotonic() - ended_at > CALL_END_WAIT_SECONDS:
                view.give_up()
        for event in await view.advance():
            yield event
        if view.through:
            return
