"""A small Motia-like step framework: API steps, event steps, typed streams, state.

A feature is a file: a module with a `config` and an async `handler`, discovered from a
steps package. The runtime checks the wiring at start-up and validates every emit.
"""

from .app import build_app
from .auth import Principal
from .context import Context, EmitError, State
from .errors import OUTAGES, ErrorBody, HttpError, PermanentError, StorageFull
from .leases import Fenced, Lease
from .runtime import Runtime
from .steps import (
    AccessRequest,
    ApiConfig,
    ApiRequest,
    ApiResponse,
    Emit,
    EventConfig,
    StepSet,
    StreamConfig,
    WiringError,
    discover,
)
from .streams import Item, Stream

__all__ = [
    "OUTAGES",
    "AccessRequest",
    "ApiConfig",
    "ApiRequest",
    "ApiResponse",
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
