"""The Python client of a streamchat server: the HTTP API, live WebSocket views and resumable SSE.

    async with StreamchatClient("http://127.0.0.1:3000") as client:
        accepted = await client.send("Write a haiku about rivers")
        async for piece in client.reply_text(accepted.conversation_id, accepted.assistant_message_id):
            print(piece, end="", flush=True)

One module per concept: `api` (StreamchatClient, Accepted), `watch` (Motia's WebSocket protocol,
with streamchat's deltas), `reply` (one reply's text), `sse` (the SSE parser and resuming
events), `errors` (StreamchatError). The CLI, the tests and the benchmark all talk through these.
"""

from streamchat.client.api import Accepted, StreamchatClient, websocket_url
from streamchat.client.errors import StreamchatError
from streamchat.client.reply import Reply
from streamchat.client.sse import Events, SseFrame, SseParser, parse_sse
from streamchat.client.watch import FINISHED, Change, Frame, Item, Watch

__all__ = [
    "FINISHED",
    "Accepted",
    "Change",
    "Events",
    "Frame",
    "Item",
    "Reply",
    "SseFrame",
    "SseParser",
    "StreamchatClient",
    "StreamchatError",
    "Watch",
    "parse_sse",
    "websocket_url",
]
