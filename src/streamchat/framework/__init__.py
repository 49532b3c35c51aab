"""A small Motia-like step framework: API steps, event steps, typed streams, state.

A feature is a file: a module with a `config` and an async `handler`, discovered from a
steps package. The runtime checks the wiring at start-up and validates every emit.
"""

from streamchat.framework.access.auth import AccessRules, ApiKeys, Principal
from streamchat.framework.backends import backends_from_urls
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
from streamchat.framework.errors import (
    OUTAGES,
    ErrorBody,
    ErrorFormat,
    HttpError,
    PermanentError,
    StorageFull,
    error_response,
)
from streamchat.framework.http.app import build_app
from streamchat.framework.http.sse import end_event_streams, sse_response
from streamchat.framework.http.websocket import SocketLimits
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.observability.logs import configure_logging
from streamchat.framework.observability.tracing import configure_tracing
from streamchat.framework.runtime import Runtime
from streamchat.framework.services import MissingService, Services
from streamchat.framework.store.state import State
from streamchat.framework.streams.pieces import Pieces
from streamchat.framework.streams.stream import Item, Stream
from streamchat.framework.streams.watch import ItemGone, ItemState, ItemWatch, Quiet, TextDelta
from streamchat.framework.text import NUL

__all__ = [
    "NUL",
    "OUTAGES",
    "AccessRequest",
    "AccessRules",
    "ApiConfig",
    "ApiKeys",
    "ApiRequest",
    "ApiResponse",
    "BusClosed",
    "Context",
    "Emit",
    "EmitError",
    "ErrorBody",
    "ErrorFormat",
    "EventConfig",
    "Fenced",
    "HttpError",
    "Item",
    "ItemGone",
    "ItemState",
    "ItemWatch",
    "Lease",
    "MissingService",
    "PermanentError",
    "Pieces",
    "Principal",
    "Quiet",
    "Runtime",
    "Services",
    "SocketLimits",
    "State",
    "StepSet",
    "StorageFull",
    "Stream",
    "StreamConfig",
    "TextDelta",
    "WiringError",
    "backends_from_urls",
    "build_app",
    "configure_logging",
    "configure_tracing",
    "discover",
    "end_event_streams",
    "error_response",
    "sse_response",
]
