"""What a tool file declares (`config = ToolConfig(...)` beside `async def handler(args, ctx)`), and
the `Tool` record every source of tools (files, MCP servers) hands the registry.

A tool file's arguments are its input model; the schema the model is shown is made from it. A tool
from elsewhere (an MCP server) brings its JSON schema instead and no model, so `Tool` carries the
schema itself and validates arguments with the model only when it has one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ValidationError

from streamchat.framework.errors import describe_validation
from streamchat.tools.errors import ToolArgumentsError

if TYPE_CHECKING:
    from streamchat.tools.context import ToolContext

#: Longest a call may run when its tool does not say: long enough for a slow search or a remote
#: server, short enough that a hung call does not hold a reply for good.
DEFAULT_TIMEOUT_SECONDS = 60.0

#: Where a tool comes from, as `GET /api/tools` says it; an MCP server's tools are `mcp:<server>`.
BUILTIN = "builtin"
FILE = "file"
#: A tool that runs in the client: no handler here, its calls wait for the client's result.
CLIENT = "client"

#: `await handler(args, ctx)`: args are the validated input model (a dict for a tool without one);
#: the result must be JSON-able; a `ToolError` is the call's error, given to the model.
ToolHandler = Callable[[Any, "ToolContext"], Awaitable[Any]]


@dataclass(frozen=True)
class ToolConfig:
    """A tool file's declaration. `needs_approval`: each call waits for the user to approve it."""

    name: str
    description: str
    input: type[BaseModel]
    needs_approval: bool = False
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS


@dataclass(frozen=True)
class Tool:
    """A tool the model may call, from whatever source: what it is shown and how a call runs."""

    name: str
    description: str
    #: The JSON schema of its arguments, self-contained (sent to the model as `parameters`).
    parameters: dict[str, Any]
    handler: ToolHandler
    #: `builtin`, `file` or `mcp:<server>`.
    source: str
    #: Where it was declared (a module, or an MCP server), for error messages and logs.
    origin: str
    needs_approval: bool = False
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    #: The arguments' model when the tool has one (tool files); None: arguments stay a JSON object.
    input: type[BaseModel] | None = None

    def arguments(self, text: str) -> Any:
        """The call's arguments as the handler takes them, from the JSON text the model wrote.

        Raises ToolArgumentsError naming the field (or saying it is not JSON), without running anything.
        """
        try:
            raw = orjson.loads(text or "{}")
        except orjson.JSONDecodeError as error:
            raise ToolArgumentsError(f"arguments are not valid JSON: {error}") from None
        if not isinstance(raw, dict):
            raise ToolArgumentsError(f"arguments must be a JSON object, got {type(raw).__name__}")
        if self.input is None:
            return raw
        try:
            return self.input.model_validate(raw)
        except ValidationError as error:
            described, _ = describe_validation(error)
            raise ToolArgumentsError(f"arguments do not fit {self.name!r}: {described}") from None

    @property
    def runs_in_client(self) -> bool:
        return self.source == CLIENT

    def public(self, *, available: bool = True, error: str | None = None) -> dict[str, Any]:
        """Its entry in `GET /api/tools`."""
        entry: dict[str, Any] = {"name": self.name, "description": self.description, "inputSchema": self.parameters,
                                 "needsApproval": self.needs_approval, "source": self.source, "available": available}
        if error is not None:
            entry["error"] = error
        return entry

    def schema(self) -> dict[str, Any]:
        """Its entry in the `tools` list of an OpenAI chat completions request."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}
