"""A run's events as Server-Sent Events: `id: <base>:<n>` and one `data: <json event>` per frame.

The events are numbered from 0 (RUN_STARTED) in the order ag_ui_layout.py fixes, so a client that
lost its connection asks for the events after the last id it saw (`Last-Event-ID`) and gets exactly
those, from any instance, while the run goes on or after it ended. `: ping` comments keep a quiet
stream open. The client going away never stops the reply (the cancel route does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from ag_ui.core import PROTOCOL_VERSION

from streamchat.framework import Context, Quiet
from streamchat.protocols.ag_ui_layout import Event, RunLayout
from streamchat.protocols.ag_ui_runs import AgUiRun
from streamchat.protocols.following import PING
from streamchat.protocols.seen_reply import DELETED, follow

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: How long a run waits for the calls of a reply that has ended before it shows them cancelled (a stop
#: ends them within seconds; only a call whose run was lost never ends).


def run_started(run: AgUiRun) -> Event:
    """The run's first event; it declares the protocol version the events follow (the package's own)."""
    event: Event = {"type": "RUN_STARTED", "threadId": run.thread_id, "runId": run.run_id,
                    "protocolVersion": PROTOCOL_VERSION}
    if run.parent_run_id is not None:
        event["parentRunId"] = run.parent_run_id
    return event


async def followed(ctx: Context, layout: RunLayout, keepalive: float | None) -> AsyncIterator[Event | Quiet]:
    """The run's events after RUN_STARTED as the reply goes (and `Quiet` after `keepalive` seconds
    without news), until the run ends. It ends without a last event when the reply can no longer be
    followed (deleted, or written again from its start) or the server stops: a client resumes then."""
    async with ctx.streams.conversation.watch_group(layout.run.thread_id, keepalive) as watch:
        async for event in follow(layout, watch.snapshot(), watch):
            yield event


async def run_events(ctx: Context, run: AgUiRun, after: int, ping_seconds: float) -> AsyncIterator[bytes]:
    """The run's events after event number `after` (-1: all of them), as SSE frames."""
    number = -1

    def frame(event: Event) -> bytes | None:
        nonlocal number
        number += 1
        if number <= after:
            return None
        return b"id: " + run.event_id(number).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"

    if (sent := frame(run_started(run))) is not None:
        yield sent
    layout = RunLayout(ctx, run)
    async for event in followed(ctx, layout, ping_seconds):
        if isinstance(event, Quiet):
            yield PING
        elif (sent := frame(event)) is not None:
            yield sent
    # Nobody can resume a run whose thread was deleted (it went with it): the client is told why it ends.
    gone = layout.ended is None and (layout.lost == DELETED or layout.reply is None)
    if gone and (sent := frame({"type": "RUN_ERROR", "message": DELETED, "code": "thread_deleted"})) is not None:
        yield sent
