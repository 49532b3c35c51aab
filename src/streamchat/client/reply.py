"""One reply's text as it streams, piece by piece, until the reply ends: what a terminal prints."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from websockets.exceptions import ConnectionClosed

from streamchat.client.errors import StreamchatError
from streamchat.client.pieces import PieceReader
from streamchat.client.watch import FINISHED, Item, Watch


class Reply(PieceReader):
    """`async for piece in reply` gives the text each frame adds, and stops when the reply ends.

    A reply ends completed, error or stopped: `item` is then its last state (`item["status"]`,
    `item.get("error")`), so a caller tells a finished answer from a failed one. `restarts` counts
    the times the text began again from nothing (a reply re-run after its instance died): the
    pieces given before a restart are no longer part of it. A socket closed before the end raises
    StreamchatError `disconnected`. Leaving early: `async with reply:` or `await reply.aclose()`.
    """

    def __init__(self, watch: Watch, message_id: str) -> None:
        super().__init__()
        self.watch = watch
        self.message_id = message_id
        self.item: Item | None = None
        self.restarts = 0

    @property
    def finished(self) -> bool:
        return self.item is not None and self.item.get("status") in FINISHED

    async def _follow(self) -> AsyncGenerator[str, None]:
        async with self.watch:
            self.item = self.watch.items.get(self.message_id)
            if self.item is not None and self.item.get("message"):
                yield str(self.item["message"])
            if self.finished:
                return
            try:
                async for change in self.watch.changes():
                    if change.item.get("id") != self.message_id:
                        continue
                    if change.kind == "delete":
                        raise StreamchatError(None, "not_found", f"reply {self.message_id} was deleted")
                    self.item = change.item
                    self.restarts += change.restarted
                    if change.appended:
                        yield change.appended
                    if self.finished:
                        return
            except ConnectionClosed as closed:
                raise _disconnected() from closed
            raise _disconnected()


def _disconnected() -> StreamchatError:
    return StreamchatError(None, "disconnected", "the connection closed before the reply finished")
