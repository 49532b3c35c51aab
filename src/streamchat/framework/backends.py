"""Pick the state store and the event bus from two URLs, as a deployment configures them.

`memory://` / `sqlite:///` with the in-process bus: one instance, nothing else to run.
`redis://` for the bus turns on everything several instances need: events through Redis
Streams, stream changes sequenced and fanned out through Redis, stops routed to the instance
running the reply. Pair it with a shared store (`postgresql://`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlparse

from streamchat.framework.bus import EventBus, bus_from_url
from streamchat.framework.bus.redis import RedisBus
from streamchat.framework.redis_link import RedisLink
from streamchat.framework.store import PostgresStore, Store, store_from_url

logger = logging.getLogger("streamchat.backends")

REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass
class Backends:
    store: Store
    bus: EventBus
    #: Set when the bus is Redis: the runtime then shares stream changes and stops through it.
    link: RedisLink | None = None


def backends_from_urls(
    state_url: str, bus_url: str, *, retry_delay: float = 0.2, retry_seconds: float = 15.0,
    prefix: str = "streamchat", partitions: int = 16, lease_seconds: float = 10.0,
) -> Backends:
    store = store_from_url(state_url, retry_seconds=retry_seconds)
    if urlparse(bus_url).scheme not in REDIS_SCHEMES:
        return Backends(store, bus_from_url(bus_url, retry_delay))
    link = RedisLink(bus_url, prefix=prefix, retry_seconds=retry_seconds)
    if not isinstance(store, PostgresStore):
        logger.warning("a Redis bus with a store other instances cannot see: run one instance, "
                       "or set STREAMCHAT_STATE_URL=postgresql://...")
    bus = RedisBus(link, partitions=partitions, lease_seconds=lease_seconds, retry_delay=retry_delay)
    return Backends(store, bus, link)
