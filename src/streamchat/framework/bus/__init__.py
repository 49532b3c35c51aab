"""Event buses, chosen by URL scheme: `memory://` (in-process, the default), `redis://` (see backends.py)."""

from __future__ import annotations

from urllib.parse import urlparse

from streamchat.framework.bus.base import BusClosed, Event, EventBus, EventHandler, Subscription
from streamchat.framework.bus.memory import MemoryBus

__all__ = ["BusClosed", "Event", "EventBus", "EventHandler", "MemoryBus", "Subscription", "bus_from_url"]


def bus_from_url(url: str, retry_delay: float = 0.2) -> EventBus:
    """Build the bus a URL names; an unknown scheme fails with the list of known ones."""
    scheme = urlparse(url).scheme
    if scheme == "memory":
        return MemoryBus(retry_delay=retry_delay)
    raise ValueError(f"unsupported STREAMCHAT_BUS_URL scheme {scheme!r}: use memory:// or redis://host:port/db")
