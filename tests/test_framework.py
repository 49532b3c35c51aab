"""The step framework on its own: discovery, the wiring check, emit validation, delivery rules."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import BaseModel

from conftest import ServerFactory
from helpers import until, wait_for_status
from streamchat.framework import EmitError, Runtime, WiringError, build_app, discover
from streamchat.framework.bus import Event, MemoryBus
from streamchat.framework.config import Emit
from streamchat.framework.discovery import StepSet
from streamchat.framework.store import MemoryStore

MODELS = """
from pydantic import BaseModel
class Ping(BaseModel):
    text: str
class Other(BaseModel):
    number: int
"""


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("pkg_")]:
        del sys.modules[name]


def write_package(root: Path, files: dict[str, str]) -> str:
    name = f"pkg_{uuid.uuid4().hex[:8]}"
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    (root / name / "models.py").write_text(MODELS)
    for filename, source in files.items():
        (root / name / filename).write_text(textwrap.dedent(source).replace("PKG", name))
    return name


API_EMITTING = """
from streamchat.framework import ApiConfig, ApiResponse, Emit
from PKG.models import {model}
config = ApiConfig(name="Sender", method="POST", path="/send", emits=[Emit("ping", {model})])
async def handler(req, ctx):
    return ApiResponse(200, {{}})
"""
EVENT_LISTENING = """
from streamchat.framework import EventConfig
from PKG.models import Ping
config = EventConfig(name="Receiver", subscribes=["{topic}"], input=Ping)
async def handler(data, ctx):
    pass
"""


def test_a_wired_package_is_discovered(packages: Path) -> None:
    name = write_package(packages, {"a.py": API_EMITTING.format(model="Ping"),
                                    "b.py": EVENT_LISTENING.format(topic="ping")})
    steps = discover(name)
    assert [s.config.name for s in steps.apis] == ["Sender"]
    assert [s.config.name for s in steps.events] == ["Receiver"]


def test_an_emit_nobody_hears_fails_naming_the_step(packages: Path) -> None:
    name = write_package(packages, {"a.py": API_EMITTING.format(model="Ping")})
    with pytest.raises(WiringError, match=r"step 'Sender' emits 'ping' but no step subscribes to it"):
        discover(name)


def test_a_subscription_nobody_feeds_fails_naming_the_step(packages: Path) -> None:
    name = write_package(packages, {"a.py": API_EMITTING.format(model="Ping"),
                                    "b.py": EVENT_LISTENING.format(topic="ping"),
                                    "c.py": EVENT_LISTENING.format(topic="pong").replace("Receiver", "Lonely")})
    with pytest.raises(WiringError, match=r"step 'Lonely' subscribes to 'pong' but no step emits it"):
        discover(name)


def test_a_payload_model_mismatch_fails_naming_both_steps(packages: Path) -> None:
    name = write_package(packages, {"a.py": API_EMITTING.format(model="Other"),
                                    "b.py": EVENT_LISTENING.format(topic="ping")})
    with pytest.raises(WiringError, match=r"'Sender' emits 'ping' as Other but step 'Receiver' expects Ping"):
        discover(name)


def test_the_product_steps_are_wired() -> None:
    steps = discover("streamchat.steps")
    assert {s.config.path for s in steps.apis} >= {"/chat", "/api/conversations", "/api/conversations/{conversationId}"}
    assert [s.config.name for s in steps.events] == ["AiResponse", "ToolCall"]
    assert set(steps.streams) == {"conversation"}


class Ping(BaseModel):
    text: str


def runtime_with(handler: object, *, max_retries: int = 2, group_by: str | None = None) -> tuple[Runtime, MemoryBus]:
    """A runtime over the memory backends with one subscriber of `ping`."""
    from streamchat.framework.config import EventConfig
    from streamchat.framework.discovery import EventStep

    bus = MemoryBus(retry_delay=0.001)
    steps = StepSet(events=[EventStep(
        EventConfig(name="Receiver", subscribes=["ping"], input=Ping, max_retries=max_retries, group_by=group_by),
        handler, "test")])  # type: ignore[arg-type]
    return Runtime(steps, MemoryStore(), bus), bus


async def test_emit_validates_the_payload_and_the_declared_topics() -> None:
    seen: list[str] = []

    async def handler(data: Ping, ctx: object) -> None:
        seen.append(data.text)

    runtime, bus = runtime_with(handler)
    ctx = runtime.context("Sender", (Emit("ping", Ping),), "trace-1")
    with pytest.raises(EmitError, match="invalid 'ping' payload"):
        await ctx.emit("ping", {"text": 5})
    with pytest.raises(EmitError, match="does not declare"):
        await ctx.emit("pong", {"text": "x"})
    await ctx.emit("ping", Ping(text="ok"))
    await bus.disconnect()
    assert seen == ["ok"]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_failing_handler_is_retried_then_dead_lettered() -> None:
    attempts: list[int] = []

    async def handler(data: Ping, ctx: object) -> None:
        attempts.append(len(attempts))
        raise RuntimeError("always broken")

    counted = ("streamchat_handler_retries_total", "streamchat_dead_letters_total")
    before = [metric(name, step="Receiver") for name in counted]
    failed_before = metric("streamchat_handler_runs_total", step="Receiver", outcome="failed")
    runtime, bus = runtime_with(handler, max_retries=2)
    await runtime.context("Sender", (Emit("ping"),), "trace-2").emit("ping", {"text": "x"})
    await bus.disconnect()
    assert len(attempts) == 3, "one try plus max_retries retries"
    assert [metric(name, step="Receiver") - was for name, was in zip(counted, before, strict=True)] == [2, 1]
    assert metric("streamchat_handler_runs_total", step="Receiver", outcome="failed") - failed_before == 3
    [letter] = await runtime.dead_letters()
    summary = (letter["step"], letter["topic"], letter["attempts"], letter["traceId"])
    assert summary == ("Receiver", "ping", 3, "trace-2")
    assert "always broken" in letter["error"]


async def test_a_handler_that_recovers_is_not_dead_lettered() -> None:
    calls: list[str] = []

    async def handler(data: Ping, ctx: object) -> None:
        calls.append(data.text)
        if len(calls) < 2:
            raise RuntimeError("flaky")

    runtime, bus = runtime_with(handler)
    await runtime.context("Sender", (Emit("ping"),), "t").emit("ping", {"text": "x"})
    await bus.disconnect()
    assert calls == ["x", "x"]
    assert await runtime.dead_letters() == []


async def test_one_group_runs_in_order_while_groups_run_concurrently() -> None:
    log: list[tuple[str, str]] = []
    running: set[str] = set()
    overlap: list[set[str]] = []

    async def handler(data: Ping, ctx: object) -> None:
        _group, _ = data.text.split(":")
        running.add(data.text)
        overlap.append(set(running))
        log.append(("start", data.text))
        await asyncio.sleep(0.01)
        log.append(("end", data.text))
        running.discard(data.text)

    runtime, bus = runtime_with(handler, group_by="group")
    ctx = runtime.context("Sender", (Emit("ping"),), "t")
    for index in range(3):
        for group in ("a", "b"):
            await ctx.emit("ping", {"text": f"{group}:{index}", "group": group})
    await bus.disconnect()
    for group in ("a", "b"):
        starts = [text for kind, text in log if kind == "start" and text.startswith(group)]
        assert starts == [f"{group}:0", f"{group}:1", f"{group}:2"]
    assert all(len({t.split(":")[0] for t in running_now}) == len(running_now) for running_now in overlap), (
        "two events of one group ran at the same time")
    assert any(len(running_now) == 2 for running_now in overlap), "different groups never ran concurrently"


async def test_a_bad_payload_is_dead_lettered_without_retries() -> None:
    calls: list[Ping] = []

    async def handler(data: Ping, ctx: object) -> None:
        calls.append(data)

    runtime, bus = runtime_with(handler, max_retries=5)
    await bus.publish(Event("ping", {"wrong": 1}, "t"))
    await bus.disconnect()
    [letter] = await runtime.dead_letters()
    assert letter["attempts"] == 1
    assert "does not match Ping" in letter["error"]
    assert calls == []


# The product's step files, re-exported into a package of a test's own.
PRODUCT_STEPS = {
    "conversation_stream.py": "from streamchat.steps.conversation_stream import config\n",
    "chat_api_step.py": "from streamchat.steps.chat_api_step import config, handler\n",
    "ai_response_step.py": "from streamchat.steps.ai_response_step import config, handler, on_failure\n",
    "tool_call_step.py": "from streamchat.steps.tool_call_step import config, handler, on_failure\n",
    "get_conversation_step.py": "from streamchat.steps.get_conversation_step import config, handler\n",
}


async def test_a_fourth_step_file_joins_without_framework_changes(servers: ServerFactory, packages: Path) -> None:
    name = write_package(packages, {
        **PRODUCT_STEPS,
        "audit_step.py": """
            from streamchat.framework import EventConfig
            from streamchat.steps.ai_response_step import ChatMessageEvent
            config = EventConfig(name="Audit", subscribes=["chat-message"], input=ChatMessageEvent)
            async def handler(data, ctx):
                await ctx.state.set("audit", data.assistantMessageId, {"trace": ctx.trace_id})
                ctx.logger.info("audited", extra={"conversationId": data.conversationId})
        """,
    })
    server = servers.start(STREAMCHAT_STEPS=name, PYTHONPATH=str(packages))
    response = httpx.post(f"{server.url}/chat", json={"message": "audit me"}, headers={"x-trace-id": "trace-audit-1"})
    accepted = response.json()
    assert response.headers["x-trace-id"] == "trace-audit-1"
    await wait_for_status(server.url, accepted["conversationId"], accepted["assistantMessageId"])
    assert httpx.get(f"{server.url}/api/conversations").status_code == 404, "that step file was left out"

    async def audited() -> bool:
        return '"msg":"audited"' in server.logs()

    await until(audited, "the audit step's log line")
    audit_lines = [line for line in server.logs().splitlines() if '"msg":"audited"' in line]
    assert len(audit_lines) == 1
    assert accepted["conversationId"] in audit_lines[0]
    assert '"trace_id":"trace-audit-1"' in audit_lines[0], "the API request's trace id reaches the event step"
    ai_lines = [line for line in server.logs().splitlines() if '"step":"AiResponse"' in line]
    assert ai_lines and all('"trace_id":"trace-audit-1"' in line for line in ai_lines)


@pytest.mark.parametrize("bus", ["memory", "redis"])
async def test_dead_letters_are_listed_by_the_admin_endpoint(
    servers: ServerFactory, packages: Path, bus: str, request: pytest.FixtureRequest,
) -> None:
    name = write_package(packages, {
        **PRODUCT_STEPS,
        "broken_step.py": """
            from streamchat.framework import EventConfig
            from streamchat.steps.ai_response_step import ChatMessageEvent
            config = EventConfig(name="Broken", subscribes=["chat-message"], input=ChatMessageEvent, max_retries=2)
            async def handler(data, ctx):
                raise RuntimeError("broken on purpose")
        """,
    })
    env = {"STREAMCHAT_STEPS": name, "PYTHONPATH": str(packages)}
    if bus == "redis":  # the Redis bus keeps them in its dead-letter stream, for every instance
        env.update(request.getfixturevalue("cluster").env())
    server = servers.start(**env)
    accepted = httpx.post(f"{server.url}/chat", json={"message": "hi"}, headers={"x-trace-id": "dead-1"}).json()
    await wait_for_status(server.url, accepted["conversationId"], accepted["assistantMessageId"])
    letters: list[dict[str, object]] = []

    async def dead_lettered() -> bool:
        nonlocal letters
        letters = (await asyncio.to_thread(httpx.get, f"{server.url}/api/admin/dead-letters")).json()["deadLetters"]
        return bool(letters)

    await until(dead_lettered, "the broken step's event dead-lettered")
    [letter] = letters
    assert (letter["step"], letter["topic"], letter["attempts"], letter["traceId"]) == (
        "Broken", "chat-message", 3, "dead-1")
    assert "broken on purpose" in str(letter["error"])
    assert '"msg":"event dead-lettered"' in server.logs()


EMITTING_ON_REQUEST = """
from streamchat.framework import ApiConfig, ApiResponse, Emit
from PKG.models import Ping
config = ApiConfig(name="Sender", method="POST", path="/send", emits=[Emit("ping", Ping)])
async def handler(req, ctx):
    await ctx.emit(req.query_params.get("topic", "ping"), {"text": "hello"})
    return ApiResponse(200, {"sent": True})
"""


async def test_a_closed_bus_is_a_503_and_a_miswired_emit_a_500(packages: Path) -> None:
    """Only a shutdown answers "try again": a step's own mistake is reported as the server error it is."""
    name = write_package(packages, {"a.py": EMITTING_ON_REQUEST, "b.py": EVENT_LISTENING.format(topic="ping")})
    runtime = Runtime(discover(name), MemoryStore(), MemoryBus())
    app = build_app(runtime)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://in-process") as client:
        assert (await client.post("/send")).status_code == 200
        miswired = await client.post("/send", params={"topic": "pong"})
        assert miswired.status_code == 500 and miswired.json()["error"] == "internal_error", miswired.text
        await runtime.bus.disconnect()
        closed = await client.post("/send")
        assert closed.status_code == 503, closed.text
        assert closed.json() == {"error": "unavailable", "detail": "the server is shutting down; try again"}
        assert closed.headers["retry-after"] == "1"
