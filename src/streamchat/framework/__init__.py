"""A small Motia-like step framework: API steps, event steps, typed streams, state.

A feature is a file: a module with a `config` and an async `handler`, discovered from a
steps package. The runtime checks the wiring at start-up and validates every emit.
"""

from streamchat.framework.access.auth import Principal
from streamchat.framework.bus import BusClosed
from streamchat.framework.config import (
    AccessRequest,
    ApiConfig,
    ApiRequest,
    ApiResponse,
    Emit,
    EventConfig,
    StreamConfig,
)
from streamchat.framework.context import Context, EmitError
from streamchat.framework.discovery import StepSet, WiringError, discover
from streamchat.framework.errors import OUTAGES, ErrorBody, HttpError, PermanentError, StorageFull
from streamchat.framework.http.app import build_app
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.runtime import Runtime
from streamchat.framework.store.state import State
from streamchat.framework.streams.stream import Item, Stream

__all__ = [
    "OUTAGES",
    "AccessRequest",
    "ApiConfig",
    "ApiRequest",
    "ApiResponse",
    "BusClosed",
    "Context",
    "Emit",
    "EmitError",
    "ErrorBody",
    "EventConfig",
    "Fenced",
    "HttpError",
    "Item",
    "Lease",
    "PermanentError",
    "Principal",
    "Runtime",
    "State",
    "StepSet",
    "StorageFull",
    "Stream",
    "StreamConfig",
    "WiringError",
    "build_app",
    "discover",
]
