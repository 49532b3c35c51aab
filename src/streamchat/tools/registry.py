"""The tools this server offers the model, by name, from every source: the built-ins and tool files
(found at start-up) and, later, each MCP server's (whose list can change while the server runs, or
be missing because the server is down). An app service: handlers reach it as `ctx.service(ToolSet)`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streamchat.tools.config import Tool

#: What `GET /api/tools` shows for a source none of whose tools could be listed.
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class ToolNameTaken(ValueError):
    """Two tools under one name: the model could not say which it means."""


class ToolSet:
    """name → tool. A source (`builtin`, `file`, `mcp:<server>`) can replace its tools as a whole and
    say it is unavailable; its tools then stay listed, marked so, and are not offered to the model."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        #: source → why it is unavailable.
        self._down: dict[str, str] = {}
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> None:
        taken = self._tools.get(tool.name)
        if taken is not None:
            raise ToolNameTaken(f"tool name {tool.name!r} is declared twice: by {taken.origin} and by {tool.origin}")
        self._tools[tool.name] = tool

    def replace_source(self, source: str, tools: Iterable[Tool], *, error: str | None = None) -> None:
        """`source`'s tools are now `tools` (an MCP server's list, read again); with `error` the source is
        unavailable for that reason. Nothing changes when a new name is taken by another source."""
        kept = {name: tool for name, tool in self._tools.items() if tool.source != source}
        replaced = ToolSet(kept.values())
        for tool in tools:
            replaced.add(tool)
        self._tools = replaced._tools
        if error is None:
            self._down.pop(source, None)
        else:
            self._down[source] = error

    def joined(self, extra: Iterable[Tool]) -> ToolSet:
        """These tools with `extra` (a request's client tools) in place of any of the same name."""
        extra = list(extra)
        if not extra:
            return self
        names = {tool.name for tool in extra}
        joined = ToolSet([tool for tool in self._tools.values() if tool.name not in names])
        for tool in extra:
            joined.add(tool)
        joined._down = dict(self._down)
        return joined

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return list(self._tools)

    def available(self, name: str) -> bool:
        tool = self._tools.get(name)
        return tool is not None and tool.source not in self._down

    def unknown(self, names: Iterable[str]) -> list[str]:
        """Those of `names` no source declares (a conversation's settings naming a tool that is not there)."""
        return [name for name in names if name not in self._tools]

    def schemas(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The OpenAI `tools` list of these tools (None: every one); a name not available now is left out,
        so a reply goes on without a server that is down."""
        chosen = self._tools if names is None else dict.fromkeys(names)
        return [self._tools[name].schema() for name in chosen if self.available(name)]

    def public(self) -> list[dict[str, Any]]:
        """`GET /api/tools`: every tool, whether it can be called now and, if not, why."""
        listed = [tool.public(available=tool.source not in self._down, error=self._down.get(tool.source))
                  for tool in self._tools.values()]
        sources = {tool.source for tool in self._tools.values()}
        listed += [{"name": source, "description": "", "inputSchema": _NO_PARAMETERS, "needsApproval": False,
                    "source": source, "available": False, "error": error}
                   for source, error in self._down.items() if source not in sources]
        return listed


def offered_tools(tools: ToolSet, names: list[str] | None, calls_tools: bool,
                  also: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The OpenAI `tools` list a reply sends: the conversation's `tools` setting (`names`; None: every
    tool that runs here, since a client tool needs a client that answers it) of those available now,
    and `also` (the client tools the request brought), or none for a model that cannot call tools. A
    name no longer declared, or whose MCP server is down, is left out: the reply goes on without it."""
    if not calls_tools:
        return []
    if names is None:
        names = [name for name in tools.names() if not tools[name].runs_in_client]
    return tools.schemas(dict.fromkeys([*names, *also]))
