"""Tools as files: the calculator, discovery and its start-up check, the registry, GET /api/tools and the
search tool's rule that a key finds only its own conversations."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from conftest import ROOT, InProcessStarter
from streamchat.framework import Services, WiringError
from streamchat.framework.access.auth import digest
from streamchat.testing.processes import free_port
from streamchat.tools import (
    Progress,
    Tool,
    ToolArgumentsError,
    ToolContext,
    ToolError,
    ToolNameTaken,
    ToolSet,
    discover_tools,
)
from streamchat.tools.builtin.calculator import CalculatorInput, calculate
from streamchat.tools.builtin.calculator import handler as calculator
from streamchat.tools.schema import parameters_of

ALICE, BOB = "alice-key-0123456789", "bob-key-9876543210"


# -- the calculator ------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "value"), [
    ("1 + 2 * 3", "7"),
    ("(1 + 2) * 3", "9"),
    ("2 * 3 ** 2", "18"),
    ("2 ** 3 ** 2", "512"),  # right-associative, as written in mathematics
    ("-2 ** 2", "-4"),  # the power binds tighter than the sign
    ("(-2) ** 2", "4"),
    ("- -3", "3"),
    ("+4 - -4", "8"),
    ("0.1 + 0.2", "0.3"),  # decimal, not binary floating point
    ("1.5 * 4", "6.0"),
    ("7 / 2", "3.5"),
    ("1 / 3", "0.3333333333333333333333333333333333"),
    ("2 ** -2", "0.25"),
    ("2 ** 0.5", "1.414213562373095048801688724209698"),
    ("12 \N{MINUS SIGN} 5", "7"),
    ("3 \N{MULTIPLICATION SIGN} \N{MINUS SIGN}4", "-12"),
    ("7 \N{DIVISION SIGN} 2", "3.5"),
    ("(2.5 + 3) \N{MULTIPLICATION SIGN} 4 ** 2 \N{DIVISION SIGN} \N{MINUS SIGN}8", "-11"),
    ("1_000 + 1e3", "2000"),
    (" ( ( 42 ) ) ", "42"),
    ("1e-400", "0"),  # too small to tell from zero: zero, not an error
])
def test_the_calculator_evaluates_arithmetic(expression: str, value: str) -> None:
    assert calculate(expression) == Decimal(value)


@pytest.mark.parametrize(("expression", "reason"), [
    ("x + 1", "the name 'x' is not allowed"),
    ("__import__('os').system('true')", "a function call is not allowed"),
    ("abs(-1)", "a function call is not allowed"),
    ("(1).real", "the attribute 'real' is not allowed"),
    ("().__class__", "the attribute '__class__' is not allowed"),
    ("[1, 2]", "a list is not allowed"),
    ("1 < 2", "a comparison is not allowed"),
    ("True + 1", "True is not a number"),
    ("'a' * 3", "'a' is not a number"),
    ("2j", "2j is not a number"),
    ("2 ^ 3", "the operator ^ is not allowed (write ** for a power)"),
    ("7 // 2", "the operator // is not allowed"),
    ("7 % 2", "the operator % is not allowed"),
    ("~1", "the operator ~ is not allowed"),
    ("1 / 0", "division by zero"),
    ("1 \N{DIVISION SIGN} (2 \N{MINUS SIGN} 2)", "division by zero"),
    ("0 / 0", "undefined"),
    ("(-8) ** 0.5", "undefined"),
    ("10 ** 10 ** 10", "too large"),
    ("2 ** 2 ** 2 ** 2 ** 2 ** 2", "too large"),
    ("9 ** 9 ** 9 ** 9", "too large"),
    ("1.0000001 ** (10 ** 30)", "too large"),
    ("1e999", "too large"),
    ("9" * 400, "too large"),
    ("-" * 500 + "1", "nested more than 100 deep"),
    ("(" * 300 + "1" + ")" * 300, "too many nested parentheses"),
    ("1" + " + 1" * 300, "longer than 1000 characters"),
    ("2 +", "not an arithmetic expression"),
    ("1 2", "not an arithmetic expression"),
    ("import os", "not an arithmetic expression"),
    ("1\x002", "not an arithmetic expression"),
    ("   ", "the expression is empty"),
])
def test_the_calculator_refuses_with_a_short_reason(expression: str, reason: str) -> None:
    with pytest.raises(ToolError) as refused:
        calculate(expression)
    assert reason in str(refused.value)


async def test_the_calculator_answers_json_numbers() -> None:
    context = ToolContext(conversation_id="c", call_id="call-1", services=Services())
    times = "6 \N{MULTIPLICATION SIGN} 7"
    assert await calculator(CalculatorInput(expression=times), context) == {"expression": times, "result": 42}
    assert (await calculator(CalculatorInput(expression="1 \N{DIVISION SIGN} 4"), context))["result"] == 0.25
    huge = await calculator(CalculatorInput(expression="2 ** 900"), context)
    assert huge["result"] == pytest.approx(2.0**900), "past what JSON readers hold exactly: a float"


# -- arguments, schemas and the registry -----------------------------------------------------------

class Point(BaseModel):
    x: float
    y: float


class Route(BaseModel):
    """Points to visit."""

    start: Point
    stops: list[Point] = []


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


async def _echo(args: Any, ctx: ToolContext) -> Any:
    return args


def _tool(name: str, source: str = "file", model: type[BaseModel] = Route) -> Tool:
    return Tool(name=name, description=f"{name} tool", parameters=parameters_of(model), handler=_echo,
                source=source, origin=f"tests.{name}", input=model)


def test_an_input_model_makes_a_self_contained_parameters_schema() -> None:
    schema = parameters_of(Route)
    assert "$defs" not in schema and "$ref" not in str(schema), schema
    assert schema["type"] == "object" and schema["required"] == ["start"]
    assert schema["properties"]["start"]["properties"]["x"] == {"title": "X", "type": "number"}
    assert schema["properties"]["stops"]["items"]["required"] == ["x", "y"]
    recursive = parameters_of(Tree)
    assert recursive["properties"]["children"]["items"] == {"$ref": "#/$defs/Tree"}, "a cycle cannot be written out"
    assert "Tree" in recursive["$defs"], "so its references resolve inside the schema itself"


def test_arguments_are_checked_against_the_input_model_naming_the_field() -> None:
    tool = _tool("route")
    assert tool.arguments('{"start": {"x": 1, "y": 2}}') == Route(start=Point(x=1, y=2))
    for text, named in [('{"start": {"x": 1}}', "start.y: Field required"),
                        ('{"start": {"x": "far", "y": 2}}', "start.x: Input should be a valid number"),
                        ('{"start": ', "not valid JSON"), ("[1]", "must be a JSON object, got list")]:
        with pytest.raises(ToolArgumentsError) as refused:
            tool.arguments(text)
        assert named in str(refused.value)
    untyped = Tool(name="remote", description="", parameters={"type": "object"}, handler=_echo, source="mcp:s",
                   origin="s")
    assert untyped.arguments('{"any": [1]}') == {"any": [1]}, "without a model, its server checks them"
    assert untyped.arguments("") == {}, "a call without arguments"


def test_the_tool_set_gives_openai_tools_and_its_public_list() -> None:
    tools = ToolSet([_tool("route"), _tool("calc", source="builtin", model=CalculatorInput)])
    assert tools.schemas(["calc"]) == [{"type": "function", "function": {
        "name": "calc", "description": "calc tool", "parameters": parameters_of(CalculatorInput)}}]
    assert [entry["function"]["name"] for entry in tools.schemas()] == ["route", "calc"]
    assert tools.unknown(["calc", "nope"]) == ["nope"]
    assert tools.public()[0] == {"name": "route", "description": "route tool", "inputSchema": parameters_of(Route),
                                 "needsApproval": False, "source": "file", "available": True}
    with pytest.raises(ToolNameTaken, match=r"'route' is declared twice: by tests\.route and by tests\.route"):
        tools.add(_tool("route"))


def test_another_source_replaces_its_tools_and_reports_itself_unavailable() -> None:
    tools = ToolSet([_tool("calc", source="builtin")])
    tools.replace_source("mcp:files", [_tool("files__read", source="mcp:files")])
    assert tools.names() == ["calc", "files__read"] and tools.available("files__read")
    tools.replace_source("mcp:files", [_tool("files__read", source="mcp:files")], error="the server exited (1)")
    assert not tools.available("files__read")
    assert [entry["function"]["name"] for entry in tools.schemas()] == ["calc"], "a tool that is down is not offered"
    listed = {entry["name"]: entry for entry in tools.public()}
    assert (listed["files__read"]["available"], listed["files__read"]["error"]) == (False, "the server exited (1)")
    tools.replace_source("mcp:web", [], error="cannot connect to http://127.0.0.1:9/mcp")
    assert {"name": "mcp:web", "source": "mcp:web", "available": False,
            "error": "cannot connect to http://127.0.0.1:9/mcp"}.items() <= tools.public()[-1].items()
    with pytest.raises(ToolNameTaken):
        tools.replace_source("mcp:web", [_tool("calc", source="mcp:web")])
    calc = tools.get("calc")
    assert calc is not None and calc.source == "builtin", "a refused list changes nothing"
    tools.replace_source("mcp:files", [])
    assert tools.names() == ["calc"] and "mcp:files" not in {entry["source"] for entry in tools.public()}


# -- tool files: discovery and the start-up check ------------------------------------------------

WEATHER = """
from pydantic import BaseModel, Field
from streamchat.tools import ToolConfig

class Place(BaseModel):
    city: str = Field(description="a city name")

class WeatherInput(BaseModel):
    place: Place
    days: int = Field(1, ge=1, le=7)

config = ToolConfig(name="weather", description="The forecast for a place.", input=WeatherInput,
                    needs_approval=True, timeout_seconds=5)

async def handler(args, ctx):
    await ctx.progress(1, 1, "looked it up")
    return {"city": args.place.city, "days": args.days, "conversation": ctx.conversation_id}
"""
HELPER = """
CONSTANT = 1  # a module without a tool config is not a tool
"""


def tool_file(name: str = "weather", *, input: str = "Empty", handler: str = "async def handler(args, ctx):") -> str:
    return textwrap.dedent(f"""
        from typing import Callable
        from pydantic import BaseModel, ConfigDict, RootModel
        from streamchat.tools import ToolConfig

        class Empty(BaseModel):
            pass

        class Opaque(BaseModel):
            model_config = ConfigDict(arbitrary_types_allowed=True)
            callback: Callable[[], None]

        class Numbers(RootModel[list[int]]):
            pass

        config = ToolConfig(name={name!r}, description="a tool", input={input})

        {handler}
            return {{}}
    """)


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [name for name in sys.modules if name.startswith("tools_")]:
        del sys.modules[name]


def write_tools(root: Path, files: dict[str, str]) -> str:
    name = f"tools_{uuid.uuid4().hex[:8]}"
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for filename, source in files.items():
        (root / name / filename).write_text(textwrap.dedent(source))
    return name


async def test_a_tool_file_is_discovered_beside_the_built_ins(packages: Path) -> None:
    package = write_tools(packages, {"weather.py": WEATHER, "helpers.py": HELPER})
    tools = discover_tools([package])
    assert tools.names() == ["calculator", "search_conversations", "weather"]
    weather = tools.get("weather")
    assert weather is not None
    assert (weather.source, weather.origin, weather.needs_approval, weather.timeout_seconds) == (
        "file", f"{package}.weather", True, 5.0)
    assert [tool.source for tool in map(tools.get, ["calculator", "search_conversations"]) if tool] == ["builtin"] * 2
    seen: list[Progress] = []

    async def progress(step: Progress) -> None:
        seen.append(step)

    context = ToolContext(conversation_id="conv-1", call_id="call-1", services=Services(), on_progress=progress)
    result = await weather.handler(weather.arguments('{"place": {"city": "Oslo"}, "days": 3}'), context)
    assert result == {"city": "Oslo", "days": 3, "conversation": "conv-1"}
    assert seen == [Progress(1, 1, "looked it up")]


@pytest.mark.parametrize(("files", "problem"), [
    ({"a.py": tool_file("twice"), "b.py": tool_file("twice")},
     "tool name 'twice' is declared twice: by PKG.a and by PKG.b"),
    ({"mine.py": tool_file("calculator")},
     "tool name 'calculator' is declared twice: by streamchat.tools.builtin.calculator and by PKG.mine"),
    ({"spaced.py": tool_file("get weather")},
     "tool name 'get weather' (PKG.spaced) is not 1-64 letters, digits, '_' or '-'"),
    ({"long.py": tool_file("x" * 65)}, f"tool name '{'x' * 65}' (PKG.long) is not 1-64 letters"),
    ({"opaque.py": tool_file(input="Opaque")},
     "tool 'weather' (PKG.opaque): input model Opaque cannot make a JSON schema"),
    ({"plain.py": tool_file(input="dict")}, "tool 'weather' (PKG.plain): input must be a pydantic model class"),
    ({"root.py": tool_file(input="Numbers")},
     "tool 'weather' (PKG.root): input model Numbers must describe a JSON object"),
    ({"sync.py": tool_file(handler="def handler(args, ctx):")},
     "tool 'weather' (PKG.sync) has a config but no `async def handler(args, ctx)`"),
    ({"broken.py": tool_file() + "\nundefined_name\n"},
     "tool module PKG.broken cannot be imported: NameError: name 'undefined_name' is not defined"),
])
def test_the_start_up_check_refuses_a_miswired_tool_naming_the_module(
    packages: Path, files: dict[str, str], problem: str,
) -> None:
    package = write_tools(packages, files)
    with pytest.raises(WiringError) as refused:
        discover_tools([package])
    assert problem.replace("PKG", package) in str(refused.value)


def test_an_unknown_tools_package_is_named() -> None:
    with pytest.raises(WiringError, match="tools package 'no_such_tools' cannot be imported"):
        discover_tools(["no_such_tools"])


@pytest.mark.parametrize(("files", "problem"), [
    ({"a.py": tool_file("twice"), "b.py": tool_file("twice")}, "tool name 'twice' is declared twice"),
    ({"spaced.py": tool_file("get weather")}, "tool name 'get weather' (PKG.spaced) is not 1-64 letters"),
    ({"opaque.py": tool_file(input="Opaque")},
     "tool 'weather' (PKG.opaque): input model Opaque cannot make a JSON schema: Cannot generate a JsonSchema"),
])
def test_a_server_with_a_miswired_tool_does_not_start(tmp_path: Path, files: dict[str, str], problem: str) -> None:
    package = write_tools(tmp_path, files)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMCHAT_", "OPENAI_"))}
    env.update(STREAMCHAT_TOOLS=f"{package}, ", STREAMCHAT_DATA_DIR=str(tmp_path / "data"),
               STREAMCHAT_STATE_URL=f"sqlite:///{tmp_path / 'state.db'}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-m", "streamchat", "serve", "--port", str(free_port())], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("streamchat: cannot start: tools are miswired:\n"), result.stderr
    assert f"  - {problem.replace('PKG', package)}" in result.stderr
    assert "Traceback" not in result.stderr


# -- the server: GET /api/tools, and search_conversations as the caller ----------------------------

async def test_get_tools_lists_the_built_ins_and_a_tool_file_with_their_input_schemas(
    in_process: InProcessStarter, packages: Path,
) -> None:
    package = write_tools(packages, {"weather.py": WEATHER})
    server = await in_process(STREAMCHAT_TOOLS=package)
    async with server.client() as client:
        response = await client.get("/api/tools")
    assert response.status_code == 200
    listed = {entry["name"]: entry for entry in response.json()}
    assert list(listed) == ["calculator", "search_conversations", "weather"]
    assert listed["calculator"] == {
        "name": "calculator", "description": listed["calculator"]["description"], "source": "builtin",
        "needsApproval": False, "available": True, "inputSchema": parameters_of(CalculatorInput)}
    assert listed["search_conversations"]["inputSchema"]["required"] == ["query"]
    weather = listed["weather"]
    assert (weather["source"], weather["needsApproval"], weather["description"]) == (
        "file", True, "The forecast for a place.")
    assert weather["inputSchema"]["properties"]["place"]["properties"]["city"] == {
        "description": "a city name", "title": "City", "type": "string"}, "nested models written out"
    assert weather["inputSchema"]["properties"]["days"] == {
        "default": 1, "maximum": 7, "minimum": 1, "title": "Days", "type": "integer"}


async def test_search_conversations_finds_only_the_callers_conversations(in_process: InProcessStarter) -> None:
    server = await in_process(STREAMCHAT_API_KEYS=f"{ALICE},{BOB}")
    started: dict[str, str] = {}
    async with server.client() as client:
        for key, message in [(ALICE, "Planning the zebra enclosure"), (BOB, "Bob's zebra photos"),
                             (ALICE, "Groceries for the week")]:
            response = await client.post("/chat", json={"message": message},
                                         headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200, response.text
            started[message] = response.json()["conversationId"]
        assert (await client.get("/api/tools")).status_code == 401, "listing the tools needs a key too"
    tools: ToolSet = server.runtime.services.get(ToolSet)
    search = tools.get("search_conversations")
    assert search is not None

    async def found(key: str, query: str) -> list[dict[str, Any]]:
        context = ToolContext(conversation_id="any", call_id="call-1", services=server.runtime.services,
                              key_id=digest(key)[:16])
        result: list[dict[str, Any]] = await search.handler(search.arguments(f'{{"query": "{query}"}}'), context)
        return result

    [alices] = await found(ALICE, "zebra")
    assert alices["conversationId"] == started["Planning the zebra enclosure"]
    assert alices["title"] == "Planning the zebra enclosure" and "zebra" in alices["snippet"].lower()
    assert set(alices) == {"conversationId", "title", "snippet"}
    [bobs] = await found(BOB, "zebra")
    assert bobs["conversationId"] == started["Bob's zebra photos"]
    assert await found(BOB, "groceries") == [], "another key's conversation is never found"
    assert [hit["conversationId"] for hit in await found(ALICE, "groceries")] == [started["Groceries for the week"]]
