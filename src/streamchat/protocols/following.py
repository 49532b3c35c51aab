"""Following one reply from its first character to its end: what every protocol view reads.

`FollowedReply.frames(render)` gives the reply's text as pieces, from its beginning (whatever it
already holds first, then each piece as the model writes it), each turned into the view's bytes
by `render`, with a keep-alive comment after each `keepalive` seconds without news (a queued
reply); afterwards `end` says how the reply ended. `wait()` just waits for that. A view that
numbers its events by piece (the Responses API) asks for the text already written to be split as
it was written (`as_written=True`): the pieces' lengths come from the reply journal, so the
numbering is the same on every instance and every reconnect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from itertools import accumulate

from streamchat.conversations.messages import FINISHED, ConversationMessage
from streamchat.conversations.replies.journal import ReplyJournals
from streamchat.framework import Context, ItemGone, ItemState, Quiet, TextDelta

#: How long a view on another instance waits for the journal to reach the text it already sees (the
#: writer flushes it every journal.FLUSH_SECONDS; only a writer that died leaves it behind).
JOURNAL_WAIT_SECONDS = 10.0
JOURNAL_POLL_SECONDS = 0.05
#: What a view sends to keep a quiet connection open (an SSE comment, which every client skips).
PING = b": ping\n\n"


@dataclass(frozen=True, slots=True)
class ReplyEnd:
    """How the reply ended: its last state, or None with `reason` when it can no longer be followed."""

    message: ConversationMessage | None
    reason: str = ""


class FollowedReply:
    """One reply, followed for a view. `end` stays None when the server stopped first (the view then
    just ends its response, and its client resumes elsewhere)."""

    def __init__(self, ctx: Context, conversation_id: str, reply_id: str, *, as_written: bool = False,
                 keepalive: float | None = None) -> None:
        self.ctx = ctx
        self.conversation_id = conversation_id
        self.reply_id = reply_id
        self.as_written = as_written
        self.keepalive = keepalive
        self.end: ReplyEnd | None = None

    async def frames(self, render: Callable[[str], bytes | None]) -> AsyncIterator[bytes]:
        """`render(piece)` for each piece (None: nothing to send for it), PING when quiet."""
        async for entry in self._entries():
            if isinstance(entry, Quiet):
                yield PING
            elif (frame := render(entry)) is not None:
                yield frame

    async def wait(self) -> ReplyEnd | None:
        async for _ in self._entries():
            pass
        return self.end

    async def _entries(self) -> AsyncIterator[str | Quiet]:
        sent = 0
        ctx, reply_id = self.ctx, self.reply_id
        async with ctx.streams.conversation.watch(self.conversation_id, reply_id, self.keepalive) as watch:
            async for event in watch:
                if isinstance(event, Quiet):
                    yield event
                elif isinstance(event, TextDelta):
                    sent += len(event.text)
                    yield event.text
                elif isinstance(event, ItemGone):
                    self.end = ReplyEnd(None, "the conversation was deleted")
                    return
                elif isinstance(event, ItemState):
                    message: ConversationMessage = event.data
                    text = message.message
                    if len(text) < sent:
                        self.end = ReplyEnd(None, "the reply was started again from the beginning")
                        return
                    if len(text) > sent:
                        for piece in await text_pieces(ctx, reply_id, text, sent, self.as_written):
                            yield piece
                        sent = len(text)
                    if message.status in FINISHED:
                        self.end = ReplyEnd(message)
                        return


async def text_pieces(ctx: Context, reply_id: str, text: str, start: int, as_written: bool) -> list[str]:
    """`text[start:]` as the pieces it was written in (or whole, when that is not asked for)."""
    if not as_written:
        return [text[start:]]
    deadline = time.monotonic() + JOURNAL_WAIT_SECONDS
    journals = ctx.service(ReplyJournals)
    lengths = await journals.piece_lengths(ctx.state, reply_id)
    while sum(lengths) < len(text) and time.monotonic() < deadline:
        await asyncio.sleep(JOURNAL_POLL_SECONDS)
        lengths = await journals.piece_lengths(ctx.state, reply_id)
    pieces: list[str] = []
    begin = 0
    for end in accumulate(lengths):
        if end > len(text):
            break
        if begin >= start:
            pieces.append(text[begin:end])
        begin = end
    if begin < len(text):  # the journal never caught up (its writer died): the rest as one piece
        pieces.append(text[max(begin, start):])
    return pieces
