"""Leased work and its fencing token: a write made under a lease that another run now holds is refused.

Every delivery of an event runs under a lease. On several instances it is the Redis bus's lease on
the event's partition; in-process it is a claim the bus takes in the store for the event's group,
which also fences off another process sharing the same database. The handler's stream writes
(`set`, `append`) carry the lease, and the write path checks it in the same atomic step as the
write: the Redis sequencer's script, the store's statement otherwise. Once another run
holds the work, the write is refused with `Fenced`; the handler stops (its provider stream closes)
and the bus acknowledges nothing, because the new holder finishes the event.

So an instance that was paused past its lease (a long GC pause, a stalled VM) and wakes up while
another instance regenerates the reply cannot add one token to it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lease:
    """A run's claim on a piece of work: `key` names the claim, `token` is this run's (unique per taking)."""

    key: str
    token: str


class Fenced(Exception):
    """A write refused because its lease is held by another run now: stop, acknowledge nothing."""

    def __init__(self, lease: Lease, what: str) -> None:
        super().__init__(f"{what}: refused, another run holds the lease {lease.key!r} now")
        self.lease = lease
