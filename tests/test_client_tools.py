"""Tools that run in the client, over HTTP: a call of one waits as an item (`awaiting_result`) with no
handler, no connection and no provider stream open; the client's result (or error) ends it through
`POST …/messages/{callId}/result` and the reply goes on in the same message. One result per call,
a stop ends the wait, a restart keeps it. In-process: real HTTP, the fake provider streaming the
calls, a models file declaring the client tools."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import FakeProvider, InProcessStarter
from helpers import InProcessServer, wait_for_status
from streamchat.framework.discovery import WiringError
from streamchat.llm.models_file import ModelsFileError, load
from test_tool_loop import calls, messages, model_requests, tool_messages, until_call

PICK_COLOR = {"name": "pick_color", "description": "Ask the user to pick a colour in the page.",
              "parameters": {"type": "object", "properties": {"prompt": {"type": "string"}},
                             "required": ["prompt"]}}


def client_tools_file(tmp_path: Path, fake: FakeProvider, extra: str = "") -> Path:
    """A models file with one model on the fake provider and the client tool `pick_color`."""
    path = tmp_path / "models.toml"
    path.write_text(f"""
[[models]]
name = "fake"
provider = "openai"
base_url = "{fake.url}/v1"
model = "fake-model"

[[client_tools]]
name = "pick_color"
description = "Ask the user to pick a colour in the page."
parameters = {{ type = "object", properties = {{ prompt = {{ type = "string" }} }}, required = ["prompt"] }}
{extra}""")
    return path


async def start(in_process: InProcessStarter, tmp_path: Path, fake: FakeProvider, **env: str) -> InProcessServer:
    return await in_process(STREAMCHAT_MODELS_FILE=str(client_tools_file(tmp_path, fake)), **env)


async def ask_for_a_colour(server: InProcessServer, fake: FakeProvider, after: list[str]) -> tuple[str, str, str]:
    """Start a reply that calls pick_color; its conversation, reply and the waiting call's id."""
    fake.script(tool_calls=[[{"text": "Let me ask. "}, {"name": "pick_color", "arguments": {"prompt": "Which?"}}]],
                tokens=after)
    async with server.client() as client:
        sent = await client.post("/chat", json={"message": "my colour?", "tools": ["pick_color", "calculator"]})
    assert sent.status_code == 200, sent.text
    cid, reply_id = sent.json()["conversationId"], sent.json()["assistantMessageId"]
    [waiting] = await until_call(server, cid, "awaiting_result")
    return cid, reply_id, waiting["id"]


async def test_a_client_tool_waits_for_the_clients_result_and_the_reply_goes_on_with_it(
    in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    server = await start(in_process, tmp_path, fake_provider)
    cid, reply_id, call_id = await ask_for_a_colour(server, fake_provider, ["You", " chose", " teal."])
    offered = [tool["function"] for tool in model_requests(fake_provider)[0]["tools"]]
    assert [tool["name"] for tool in offered] == ["pick_color", "calculator"]
    assert offered[0]["parameters"] == PICK_COLOR["parameters"]
    shown = await messages(server, cid)
    assert shown[1]["status"] == "streaming", "the reply waits with its call"
    assert (shown[2]["name"], orjson.loads(shown[2]["arguments"])) == ("pick_color", {"prompt": "Which?"})
    assert shown[2]["runsIn"] == "client"
    assert len(fake_provider.streams()) == 1, "no model round runs while the client has not answered"

    async with server.client() as client:
        given = await client.post(f"/api/conversations/{cid}/messages/{call_id}/result",
                                  json={"output": {"colour": "teal", "hex": "#008080"}})
        again = await client.post(f"/api/conversations/{cid}/messages/{call_id}/result", json={"output": 1})
    assert given.status_code == 200, given.text
    assert (given.json()["status"], given.json()["result"]) == ("completed", {"colour": "teal", "hex": "#008080"})
    assert again.status_code == 409 and "not awaiting a client's result" in again.json()["detail"]
    reply = await wait_for_status(server, cid, reply_id)
    assert (reply["status"], reply["message"]) == ("completed", "Let me ask. You chose teal.")
    said = tool_messages(model_requests(fake_provider)[-1])
    assert orjson.loads(said[1]["content"]) == {"colour": "teal", "hex": "#008080"}
    assert said[1]["tool_call_id"] == said[0]["tool_calls"][0]["id"]


async def test_a_clients_error_is_told_to_the_model(
    in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    server = await start(in_process, tmp_path, fake_provider)
    cid, reply_id, call_id = await ask_for_a_colour(server, fake_provider, ["No", " colour", " then."])
    async with server.client() as client:
        given = await client.post(f"/api/conversations/{cid}/messages/{call_id}/result",
                                  json={"error": "the user closed the picker"})
    assert given.status_code == 200 and given.json()["status"] == "error"
    assert (await wait_for_status(server, cid, reply_id))["message"] == "Let me ask. No colour then."
    said = tool_messages(model_requests(fake_provider)[-1])[1]
    assert said["content"] == "error: the user closed the picker"


@pytest.mark.parametrize(("body", "named"), [
    ({}, "exactly one of `output` and `error`"),
    ({"output": 1, "error": "x"}, "exactly one of `output` and `error`"),
    ({"error": None}, "error"),
    ({"error": ""}, "error"),
    ({"output": 1, "colour": "red"}, "colour"),
])
async def test_a_result_that_is_not_one_output_or_one_error_is_422_and_the_call_still_waits(
    in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path, body: dict[str, Any], named: str,
) -> None:
    server = await start(in_process, tmp_path, fake_provider)
    cid, _, call_id = await ask_for_a_colour(server, fake_provider, ["ok"])
    async with server.client() as client:
        refused = await client.post(f"/api/conversations/{cid}/messages/{call_id}/result", json=body)
        not_json = await client.post(f"/api/conversations/{cid}/messages/{call_id}/result", content=b"{",
                                     headers={"Content-Type": "application/json"})
    assert refused.status_code == 422 and named in refused.text, refused.text
    assert not_json.status_code in (400, 422)
    assert [call["status"] for call in await calls(server, cid)] == ["awaiting_result"]


async def test_a_result_for_what_is_not_a_waiting_client_call_is_409_or_404(
    in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    server = await in_process(STREAMCHAT_MODELS_FILE=str(client_tools_file(tmp_path, fake_provider)),
                              STREAMCHAT_API_KEYS="owner-key,other-key")
    fake_provider.script(tool_calls=[[{"name": "pick_color", "arguments": {"prompt": "?"}},
                                      {"name": "calculator", "arguments": {"expression": "1+1"}}]], tokens=["x"])
    async with (server.client(headers={"Authorization": "Bearer owner-key"}) as owner,
                server.client(headers={"Authorization": "Bearer other-key"}) as other):
        sent = (await owner.post("/chat", json={"message": "m", "tools": ["pick_color", "calculator"]})).json()
        cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
        found: list[dict[str, Any]] = []
        async with asyncio.timeout(20):
            while not any(m.get("status") == "awaiting_result" for m in found):
                found = (await owner.get(f"/api/conversations/{cid}")).json()["messages"]
        picker = next(m for m in found if m.get("name") == "pick_color")
        server_call = f"{reply_id}.t0.1"
        assert "runsIn" not in next(m for m in found if m["id"] == server_call)
        other_key = await other.post(f"/api/conversations/{cid}/messages/{picker['id']}/result", json={"output": 1})
        on_a_server_call = await owner.post(f"/api/conversations/{cid}/messages/{server_call}/result",
                                            json={"output": 1})
        on_the_reply = await owner.post(f"/api/conversations/{cid}/messages/{reply_id}/result", json={"output": 1})
        unknown = await owner.post(f"/api/conversations/{cid}/messages/nope/result", json={"output": 1})
        approve_it = await owner.post(f"/api/conversations/{cid}/messages/{picker['id']}/approve")
        given = await owner.post(f"/api/conversations/{cid}/messages/{picker['id']}/result", json={"output": "red"})
    assert other_key.status_code == 404
    assert on_a_server_call.status_code == 409
    assert on_the_reply.status_code == 404 and unknown.status_code == 404
    assert approve_it.status_code == 409
    assert given.status_code == 200, given.text
    finished = await wait_for_status(server, cid, reply_id, headers={"Authorization": "Bearer owner-key"})
    assert finished["status"] == "completed"


async def test_stop_ends_a_wait_for_a_clients_result_which_can_then_not_be_given(
    in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    server = await start(in_process, tmp_path, fake_provider)
    cid, reply_id, call_id = await ask_for_a_colour(server, fake_provider, ["never"])
    async with server.client() as client:
        stopped = await client.post(f"/api/conversations/{cid}/messages/{reply_id}/stop")
        late = await client.post(f"/api/conversations/{cid}/messages/{call_id}/result", json={"output": "red"})
    assert stopped.status_code == 202
    assert late.status_code == 409
    reply = await wait_for_status(server, cid, reply_id)
    assert (reply["status"], reply["message"]) == ("stopped", "Let me ask. ")
    assert [call["status"] for call in await calls(server, cid)] == ["cancelled"]
    assert len(fake_provider.streams()) == 1


async def test_a_wait_for_a_clients_result_survives_a_restart(
    in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    server = await start(in_process, tmp_path, fake_provider)
    cid, reply_id, call_id = await ask_for_a_colour(server, fake_provider, ["After", " the", " restart."])
    await server.shutdown()
    again = await start(in_process, tmp_path, fake_provider)
    assert [call["status"] for call in await calls(again, cid)] == ["awaiting_result"]
    async with again.client() as client:
        given = await client.post(f"/api/conversations/{cid}/messages/{call_id}/result", json={"output": None})
    assert given.status_code == 200 and given.json()["status"] == "completed"
    reply = await wait_for_status(again, cid, reply_id)
    assert (reply["status"], reply["message"]) == ("completed", "Let me ask. After the restart.")
    assert tool_messages(model_requests(fake_provider)[-1])[1]["content"] == "null"


async def test_models_file_client_tools_are_offered_only_where_the_settings_name_them(
    in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    server = await start(in_process, tmp_path, fake_provider)
    fake_provider.script(tokens=["plain"], tool_calls=[])
    async with server.client() as client:
        listed = (await client.get("/api/tools")).json()
        every = (await client.post("/chat", json={"message": "a"})).json()
        await wait_for_status(server, every["conversationId"], every["assistantMessageId"])
        offered = [tool["function"]["name"] for tool in model_requests(fake_provider)[-1]["tools"]]
    picker = next(tool for tool in listed if tool["name"] == "pick_color")
    assert (picker["source"], picker["inputSchema"]) == ("client", PICK_COLOR["parameters"])
    assert "pick_color" not in offered and "calculator" in offered, "null tools: every tool that runs here"


def test_a_client_tool_named_like_a_server_tool_stops_the_start(fake_provider: FakeProvider, tmp_path: Path) -> None:
    from streamchat.app import create_app
    from streamchat.settings import Settings

    path = client_tools_file(tmp_path, fake_provider, extra='[[client_tools]]\nname = "calculator"\n')
    with pytest.raises(WiringError, match="calculator"):
        create_app(Settings(models_file=path))


def test_a_client_tool_declared_twice_or_badly_is_named_in_the_models_files_error(
    fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    twice = client_tools_file(tmp_path, fake_provider, extra='[[client_tools]]\nname = "pick_color"\n')
    with pytest.raises(ModelsFileError, match="client tool 'pick_color': name: another client tool"):
        load(twice, {})
    bad = client_tools_file(tmp_path, fake_provider, extra='[[client_tools]]\nname = "two words"\n')
    with pytest.raises(ModelsFileError, match="client tool 'two words': name"):
        load(bad, {})
