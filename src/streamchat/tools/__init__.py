"""Tools the model may call: tool files (a module with a `ToolConfig` and an async handler, found
like the steps), the built-ins, and the registry every source adds its tools to."""

from streamchat.tools.config import DEFAULT_TIMEOUT_SECONDS, Tool, ToolConfig, ToolHandler
from streamchat.tools.context import Progress, ToolContext
from streamchat.tools.discovery import discover_tools
from streamchat.tools.errors import ToolArgumentsError, ToolError
from streamchat.tools.registry import ToolNameTaken, ToolSet, offered_tools

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "Progress",
    "Tool",
    "ToolArgumentsError",
    "ToolConfig",
    "ToolContext",
    "ToolError",
    "ToolHandler",
    "ToolNameTaken",
    "ToolSet",
    "discover_tools",
    "offered_tools",
]
