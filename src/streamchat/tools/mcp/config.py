"""An `[[mcp_servers]]` entry of the models file: one MCP server whose tools the model may call.

Only the entry's shape lives here (the models file reads and checks it with the models, so a typo
stops the start like any other); connecting is connection.py's. Importing this module does not
import the MCP SDK.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator, model_validator

#: OpenAI's rule for a function name; a tool is offered to the model as `{server}__{tool}` under it.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Between the server's name and its tool's in the name the model sees.
SEPARATOR = "__"

NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class McpServerEntry(BaseModel):
    """How to reach one MCP server: `command` (stdio) or `url` (streamable HTTP), never both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    command: list[NonEmpty] | None = Field(None, min_length=1)
    #: Added to the few variables the SDK passes on (PATH, HOME, ...): a server sees nothing else of ours.
    env: dict[str, str] | None = None
    #: The server's working directory; relative to the models file, which is also the default.
    cwd: Path | None = None
    url: str | None = None
    headers: dict[str, str] | None = None
    #: True: every tool of this server waits for the user's approval; a list: only these tools.
    needs_approval: StrictBool | list[NonEmpty] = False
    #: A call's limit, and the limit of connecting and listing the tools at start-up.
    timeout_seconds: float = Field(60, gt=0, allow_inf_nan=False)

    @field_validator("name")
    @classmethod
    def _usable_as_prefix(cls, name: str) -> str:
        if SEPARATOR in name or not TOOL_NAME.match(name + SEPARATOR + "x"):
            raise ValueError(f"{name!r} is not allowed: use letters, digits, _ and - (at most 61), "
                             f"without {SEPARATOR!r}: its tools are named {name}{SEPARATOR}<tool>")
        return name

    @field_validator("needs_approval", mode="before")
    @classmethod
    def _flag_or_tool_names(cls, value: object) -> object:
        names = isinstance(value, list) and all(isinstance(name, str) and name for name in value)
        if not isinstance(value, bool) and not names:
            raise ValueError(f"must be true, false or a list of tool names, got {value!r}")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return url

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerEntry:
        if (self.command is None) == (self.url is None):
            raise ValueError("command: give either command = [...] (stdio) or url = \"...\" (streamable HTTP)"
                             if self.command is None else
                             "url: give either command (stdio) or url (streamable HTTP), not both")
        if self.url is not None:
            for key in ("env", "cwd"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: only for a server run by command (this one has a url)")
        elif self.headers is not None:
            raise ValueError("headers: only for a server reached by url (this one is run by command)")
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"

    def tool_name(self, tool: str) -> str:
        """The name the model sees for this server's `tool`."""
        return f"{self.name}{SEPARATOR}{tool}"

    def needs_approval_of(self, tool: str) -> bool:
        approval = self.needs_approval
        return approval if isinstance(approval, bool) else tool in approval
