"""The Python client of a streamchat server: the HTTP API, replies as they are written, live views.

    async with StreamchatClient("http://127.0.0.1:3000") as client:
        reply = await client.send("Write a haiku about rivers")
        async for piece in reply:
            print(piece, end="", flush=True)
        print(reply.status)  # completed, stopped or error

    with SyncStreamchatClient("http://127.0.0.1:3000") as client:  # the same, for code without a loop
        for piece in client.send("Write a haiku about rivers"):
            print(piece, end="", flush=True)

One module per concept: `api` (StreamchatClient, Page), `reply_stream` (a reply sent for, the
server's Accepted answer, read over SSE), `sync` (SyncStreamchatClient, SyncReplyStream),
`bridge` (an event loop on a thread for blocking callers), `watch` (Motia's WebSocket protocol,
with streamchat's deltas), `reply` (one reply's text over the WebSocket), `sse` (the SSE parser
and resuming events), `errors` (StreamchatError), `interactive` (the terminal session of
`streamchat chat`). The CLI, the tests and the benchmark all talk through these.
"""

from streamchat.client.api import Page, StreamchatClient, websocket_url
from streamchat.client.errors import StreamchatError
from streamchat.client.reply import Reply
from streamchat.client.reply_stream import Accepted, ReplyStream
from streamchat.client.sse import Events, SseFrame, SseParser, parse_sse
from streamchat.client.sync import SyncReplyStream, SyncStreamchatClient
from streamchat.client.watch import FINISHED, Change, Frame, Item, Watch

__all__ = [
    "FINISHED",
    "Accepted",
    "Change",
    "Events",
    "Frame",
    "Item",
    "Page",
    "Reply",
    "ReplyStream",
    "SseFrame",
    "SseParser",
    "StreamchatClient",
    "StreamchatError",
    "SyncReplyStream",
    "SyncStreamchatClient",
    "Watch",
    "parse_sse",
    "websocket_url",
]
