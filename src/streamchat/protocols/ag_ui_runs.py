"""An AG-UI run, as the thread keeps it: which stretch of which reply the run shows, and where its
event ids start, in shared state (so any instance can stream or resume it, and a run id is taken once).

A run is a stretch of a reply: from its beginning (the reply to the run's new user message), or, for
a run that goes on with a waiting reply, from the model round whose calls it answered (the calls of
that round that still wait are kept with it: they end it again). Its events are laid out from
what the conversation stores (ag_ui_layout.py), so event N of a run is the same event whoever reads
it and whenever. Each event's SSE id is `<base>:<N>`: `base` is the conversation sequence number of
the change the run's own request made last (the reply it created, the call it answered), so ids are
unique within the conversation and rise from one run to the next, and N tells apart the several
events one change may give.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from streamchat.conversations.ownership import require_owner
from streamchat.conversations.records import AG_UI_RUNS, scope_of
from streamchat.framework import Context, HttpError, Principal
from streamchat.framework.store import JSON
from streamchat.protocols.ag_ui_input import invalid
from streamchat.protocols.ag_ui_snapshot import Cuts


@dataclass(frozen=True, slots=True)
class AgUiRun:
    thread_id: str
    run_id: str
    reply_id: str
    #: None: the reply from its beginning; else the round whose interrupts the run answered.
    after_round: int | None
    base: int
    parent_run_id: str | None = None
    #: A run that goes on: the calls of its round that still waited once its request had answered.
    pending: tuple[str, ...] = ()

    def event_id(self, number: int) -> str:
        return f"{self.base}:{number}"

    def number_of(self, event_id: str, field: str = "Last-Event-ID") -> int:
        """The event number a `Last-Event-ID` of this run names; 422 naming `field` for any other."""
        base, _, number = event_id.strip().partition(":")
        if base != str(self.base) or not number.isdigit():
            raise invalid(field, f"{event_id!r} is not an event id of run {self.run_id!r} (they read "
                          f"'{self.base}:<n>')")
        return int(number)

    def record(self) -> JSON:
        return {"replyId": self.reply_id, "afterRound": self.after_round, "base": self.base,
                "parentRunId": self.parent_run_id, "pending": list(self.pending)}


async def reserve(ctx: Context, thread_id: str, run_id: str) -> str:
    """Take the run id in the thread before the run's request writes anything: 409 when a run has it."""
    mine = {"starting": uuid.uuid4().hex}
    if await ctx.state.claim(scope_of(AG_UI_RUNS, thread_id), run_id, mine) != mine:
        raise invalid("runId", f"{run_id!r} already names a run of thread {thread_id!r}: GET "
                      f"/ag-ui/{thread_id}/runs/{run_id}/events follows it; a new run needs a new id",
                      status=409, error="conflict")
    return mine["starting"]


async def release(ctx: Context, thread_id: str, run_id: str) -> None:
    """The run's request failed: its id is free again."""
    await ctx.state.delete(scope_of(AG_UI_RUNS, thread_id), run_id)


async def keep(ctx: Context, run: AgUiRun) -> None:
    await ctx.state.set(scope_of(AG_UI_RUNS, run.thread_id), run.run_id, run.record())


async def keep_cuts(ctx: Context, run: AgUiRun, cuts: Cuts) -> Cuts:
    """The cuts of the run's snapshot (ag_ui_snapshot.py): the first reader's, which every reader uses
    (kept beside the run, `<runId>#snapshot`: no run id has a `#`)."""
    kept = await ctx.state.claim(scope_of(AG_UI_RUNS, run.thread_id), f"{run.run_id}#snapshot", {"cuts": cuts})
    return dict(kept["cuts"]) if isinstance(kept, dict) else cuts


async def find_run(ctx: Context, thread_id: str, run_id: str, principal: Principal | None) -> AgUiRun:
    """The caller's run; 404 for an unknown one, or another key's thread."""
    try:
        await require_owner(ctx, thread_id, principal)
    except HttpError:
        raise _no_such_run(thread_id, run_id) from None
    record = await ctx.state.get(scope_of(AG_UI_RUNS, thread_id), run_id)
    if not isinstance(record, dict) or "replyId" not in record:  # unknown, or its request still starting
        raise _no_such_run(thread_id, run_id)
    after = record.get("afterRound")
    return AgUiRun(thread_id, run_id, str(record["replyId"]), None if after is None else int(after),
                   int(record["base"]), record.get("parentRunId"), tuple(record.get("pending") or ()))


def _no_such_run(thread_id: str, run_id: str) -> HttpError:
    return HttpError(404, "not_found", f"runId {run_id!r}: no such run in thread {thread_id!r}")
