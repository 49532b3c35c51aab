"""The sequencer interface: a group's next seq, the change's way to every instance, and the log.

The hub (streams/hub.py) writes every change through a sequencer and applies what it is given
back in seq order. The in-process sequencer (local.py) serves one instance: it only counts, and
the hub applies a change itself as soon as the store has it. The Redis sequencer (redis.py)
serves several: it counts, logs and broadcasts in one step, and every instance, the writer's
own included, applies the change when the broadcast reaches it, so all of them see one order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from streamchat.framework.leases import Lease
from streamchat.framework.store import JSON

#: "event": a custom event (a change with a seq when sent by `send_event`, none when by `send`);
#: "events-cleared": the group's kept events are gone (its items were all deleted).
SequencedKind = Literal["put", "delta", "delete", "event", "events-cleared"]


@dataclass(frozen=True, slots=True)
class Sequenced:
    """One change of a group with its seq, as the hub applies it (a custom event that is no change has none)."""

    stream: str
    group: str
    seq: int | None
    kind: SequencedKind
    item_id: str | None
    payload: Any
    field: str | None = None
    #: The writer started the group's count afresh with this change (new group or lost counter):
    #: a jump in seq here is not a gap.
    reseeded: bool = False
    #: For a `put` the writer stored itself: whether the store had no such item before.
    created: bool | None = None


class Sequencer(ABC):
    """Gives each change of a group the group's next seq, and makes it known to every instance."""

    #: True: `sequence` also sends the change to every instance, which apply it when it arrives
    #: (and a lease is checked here, not in the store). False: one instance; the hub applies
    #: its own change once it is stored, and the store checks the lease.
    broadcasts: bool = False

    async def start(self, follows: Callable[[str, str], bool], on_change: Callable[[Sequenced], None],
                    on_reconnect: Callable[[], Awaitable[None]]) -> None:
        """Begin delivering changes of the groups `follows` names to `on_change`; `on_reconnect`
        runs after a dropped connection is back, so the hub can fill what it missed."""

    @abstractmethod
    async def sequence(
        self, stream: str, group: str, kind: SequencedKind, item_id: str | None, payload: Any,
        field: str | None = None, floor: int | None = None, lease: Lease | None = None,
    ) -> int | None:
        """Sequence one change; returns its seq.

        None means the sequencer has no count for the group (new, expired, or lost): the caller
        works out a `floor` above every seq ever handed out and calls again with it. A change under
        a `lease` another run holds raises `Fenced`, where the sequencer checks leases.
        """

    async def publish_event(self, stream: str, group: str, item_id: str | None, event: Any) -> None:
        """Send a custom event (not sequenced, not logged) to every instance."""

    async def read_log(self, stream: str, group: str, after: int = 0) -> list[Sequenced]:
        """The group's changes with seq > `after` that the store may not have yet, oldest first."""
        return []

    async def forget(self, stream: str, group: str) -> None:
        """Drop what the log holds of a group whose items are all deleted; its count goes on."""

    async def current_seq(self, stream: str, group: str) -> int | None:
        """The last seq handed out for the group, or None when there is no count for it."""
        return None

    async def stop(self) -> None:
        """Stop delivering changes."""


def apply_to_items(items: dict[str, JSON], parts: dict[str, list[str]], change: Sequenced) -> None:
    """Lay one logged change over stored items (a newer seq wins); text pieces collect in `parts`."""
    item_id, seq = change.item_id, change.seq
    if item_id is None or seq is None:
        return
    current = items.get(item_id)
    if current is not None and current["seq"] >= seq:
        return
    if change.kind == "put":
        items[item_id] = {**change.payload, "id": item_id, "seq": seq}
        parts.pop(item_id, None)
    elif change.kind == "delta" and current is not None and change.field is not None:
        pieces = parts.setdefault(item_id, [str(current.get(change.field, ""))])
        pieces.append(change.payload)
        current["seq"] = seq
        current[change.field] = pieces  # joined once, at the end
    elif change.kind == "delete":
        items.pop(item_id, None)
        parts.pop(item_id, None)


def join_parts(items: dict[str, JSON], parts: dict[str, list[str]]) -> None:
    for item_id, pieces in parts.items():
        item = items.get(item_id)
        if item is None:
            continue
        for key, value in item.items():
            if value is pieces:
                item[key] = "".join(pieces)
