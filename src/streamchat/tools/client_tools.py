"""Tools that run in the client: the model calls them like any other, but no handler runs here —
the call waits (`awaiting_result`) until a client sends its result, and the reply goes on then.

They come from the models file (`[[client_tools]]`, offered to conversations whose `tools` setting
names them: a ChatKit thread sends no definitions) or from a request that brings its own (AG-UI's
`tools`, an OpenAI request's function tools), kept with the reply across its rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from streamchat.framework import HttpError
from streamchat.framework.discovery import WiringError
from streamchat.tools.config import CLIENT, Tool
from streamchat.tools.registry import ToolNameTaken, ToolSet


class ClientTool(BaseModel):
    """A tool whose calls the client answers: what the model is shown."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The function name the model calls.")
    description: str = Field(default="", max_length=10_000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}},
                                       description="The JSON schema of its arguments (an object).")

    def as_tool(self, origin: str) -> Tool:
        return Tool(name=self.name, description=self.description, parameters=self.parameters,
                    handler=_answered_by_the_client, source=CLIENT, origin=origin)


async def _answered_by_the_client(arguments: Any, context: Any) -> Any:
    raise RuntimeError("a client tool has no handler here: its result comes from the client")


def add_client_tools(tools: ToolSet, declared: Sequence[ClientTool]) -> None:
    """The models file's client tools join the server's; a name a tool file or built-in has already
    stops the start, naming both."""
    for client_tool in declared:
        try:
            tools.add(client_tool.as_tool("the models file's [[client_tools]]"))
        except ToolNameTaken as error:
            raise WiringError(f"tools are miswired: {error}") from None


def request_tools(tools: ToolSet, given: Sequence[ClientTool], field: str = "tools") -> list[ClientTool]:
    """A request's client tools, checked: 422 naming the field for a name given twice or one that a
    tool running here has (the model could not tell which it calls)."""
    seen: set[str] = set()
    for index, tool in enumerate(given):
        server_side = tool.name in tools and not tools[tool.name].runs_in_client
        if tool.name in seen or server_side:
            why = "is given twice" if tool.name in seen else "is the name of a tool of this server"
            detail = f"{field}[{index}].name: {tool.name!r} {why}"
            raise HttpError(422, "validation_error", detail,
                            fields=[{"field": f"{field}[{index}].name", "message": detail, "type": "value_error"}])
        seen.add(tool.name)
    return list(given)


def reply_tools(tools: ToolSet, given: Sequence[ClientTool] | None) -> ToolSet:
    """What a reply's calls are looked up in: the server's tools and the request's client tools."""
    return tools.joined(tool.as_tool("the request") for tool in given or ())
