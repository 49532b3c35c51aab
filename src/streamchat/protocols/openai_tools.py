"""The `tools` of an OpenAI request as client tools: functions the client runs itself.

Both APIs take function definitions (Responses flat, `{"type": "function", "name", "description",
"parameters", "strict"}`; Chat Completions nested, `{"type": "function", "function": {...}}`). They
are offered to the model for that reply beside the conversation's own tools, which run here; the
model's calls of them come back to the client (a `function_call` item, a `tool_calls` delta) and the
client's next request carries their outputs. Other tool types (web search, file search, MCP servers
the request would bring…) are the server's business here, so they are refused by name: 400 naming
`tools[i].type`. `strict` is accepted and not applied (arguments are not checked against the schema
of a tool this server does not run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamchat.framework import HttpError
from streamchat.protocols.openai_errors import invalid
from streamchat.tools import ToolSet
from streamchat.tools.client_tools import ClientTool, request_tools


class FunctionDefinition(BaseModel):
    """A function as OpenAI's requests define it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = Field(default=None, description="Accepted and not applied.")


class ResponsesFunction(FunctionDefinition):
    type: Literal["function"]


class CompletionsFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionDefinition


@dataclass(frozen=True, slots=True)
class RequestTools:
    """A request's function tools: as client tools, and as the request gave them (echoed back)."""

    client_tools: list[ClientTool]
    given: list[dict[str, Any]]


def _refused(where: str, error: ValidationError) -> Exception:
    first = error.errors(include_url=False)[0]
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
    return invalid(f"{where}{path}", first["msg"])


def _checked(tools: ToolSet, definitions: Sequence[tuple[str, FunctionDefinition]]) -> list[ClientTool]:
    """The definitions as client tools: a name given twice, or one a tool running here has (the model
    could not tell which it calls), is refused naming it (as conversations.send would, by its index)."""
    offered: list[ClientTool] = []
    for where, definition in definitions:
        try:
            tool = ClientTool.model_validate(definition.model_dump(include={"name", "description", "parameters"},
                                                                  exclude_none=True))
        except ValidationError as error:
            raise _refused(where, error) from None
        if any(earlier.name == tool.name for earlier in offered):
            raise invalid(f"{where}.name", f"{tool.name!r} is given twice")
        try:
            request_tools(tools, [tool])
        except HttpError:
            raise invalid(f"{where}.name", f"{tool.name!r} is the name of a tool of this server") from None
        offered.append(tool)
    return offered


def _kind_of(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise invalid(where, "a tool is an object")
    kind = value.get("type")
    if kind != "function":
        raise invalid(f"{where}.type", f"{kind!r} is not supported: a request brings function tools (which the "
                      "client runs); the tools this server runs are the conversation's (its tools setting)")


def responses_tools(tools: ToolSet, given: Sequence[Any] | None) -> RequestTools:
    """A Responses request's `tools`; 400 naming the field at fault."""
    definitions: list[tuple[str, FunctionDefinition]] = []
    for index, value in enumerate(given or ()):
        where = f"tools[{index}]"
        _kind_of(value, where)
        try:
            definitions.append((where, ResponsesFunction.model_validate(value)))
        except ValidationError as error:
            raise _refused(where, error) from None
    return RequestTools(_checked(tools, definitions), [definition.model_dump() for _, definition in definitions])


def completions_tools(tools: ToolSet, given: Sequence[Any] | None) -> RequestTools:
    """A Chat Completions request's `tools`; 400 naming the field at fault."""
    definitions: list[tuple[str, FunctionDefinition]] = []
    for index, value in enumerate(given or ()):
        where = f"tools[{index}]"
        _kind_of(value, where)
        try:
            definitions.append((f"{where}.function", CompletionsFunction.model_validate(value).function))
        except ValidationError as error:
            raise _refused(where, error) from None
    return RequestTools(_checked(tools, definitions),
                        [{"type": "function", "function": definition.model_dump()} for _, definition in definitions])


def check_tool_choice(value: Any) -> None:
    """`tool_choice`: only "auto" (the model decides), what both APIs do without it."""
    if value is not None and value != "auto":
        raise invalid("tool_choice", "only \"auto\" is supported")
