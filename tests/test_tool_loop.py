"""The tool loop over HTTP: the model's calls become items of the conversation, run as events, and the
reply goes on with their results in the same message; approvals, stops, failures, retries and the
rounds limit. In-process: real HTTP, the real fake provider streaming OpenAI tool-call deltas, and
tool files (tests/loop_tools) that record what happened to them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import FakeProvider, InProcessStarter
from helpers import InProcessServer, wait_for_status
from loop_tools import delete_file, flaky, slow_wait
from streamchat.framework.errors import Unavailable

TOOLS = "loop_tools"


async def send(server: InProcessServer, message: str, cid: str | None = None) -> dict[str, Any]:
    async with server.client() as client:
        answer = await client.post("/chat", json={"message": message, **({"conversationId": cid} if cid else {})})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def messages(server: InProcessServer, cid: str) -> list[dict[str, Any]]:
    async with server.client() as client:
        answer = await client.get(f"/api/conversations/{cid}")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["messages"])


async def calls(server: InProcessServer, cid: str) -> list[dict[str, Any]]:
    return [message for message in await messages(server, cid) if message["from"] == "tool"]


async def until_call(server: InProcessServer, cid: str, status: str, count: int = 1,
                     timeout: float = 20) -> list[dict[str, Any]]:
    """Poll until `count` calls of the conversation have `status`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [call for call in await calls(server, cid) if call["status"] == status]
        if len(found) >= count:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"no {count} call(s) {status}: {await calls(server, cid)}"
        await asyncio.sleep(0.02)


def model_requests(fake: FakeProvider) -> list[dict[str, Any]]:
    return fake.requests()


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The assistant tool_calls and tool results a model request carried."""
    return [message for message in request["messages"] if message["role"] == "tool" or message.get("tool_calls")]


async def test_a_calculator_call_streams_as_an_item_runs_and_the_reply_goes_on_with_its_result(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    fake_provider.script(tool_calls=[[{"text": "Let me work it out. "},
                                      {"name": "calculator", "arguments": {"expression": "2 + 3 * 4"}}]],
                         tokens=["It", " is", " 14."], argument_chunk=4)
    sent = await send(server, "What is 2 + 3 * 4?")
    cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
    reply = await wait_for_status(server, cid, reply_id)
    assert (reply["status"], reply["message"]) == ("completed", "Let me work it out. It is 14.")

    shown = await messages(server, cid)
    assert [message["from"] for message in shown] == ["user", "assistant", "tool"]
    call = shown[2]
    assert call["id"] == f"{reply_id}.t0.0" and call["parentId"] == reply_id
    assert (call["name"], call["status"], call["round"], call["offset"]) == ("calculator", "completed", 0, 20)
    assert orjson.loads(call["arguments"]) == {"expression": "2 + 3 * 4"}
    assert call["result"] == {"expression": "2 + 3 * 4", "result": 14}
    assert call["siblings"] == [call["id"]] and call["siblingIndex"] == 0

    first, second = model_requests(fake_provider)[-2:]
    assert [tool["function"]["name"] for tool in first["tools"]] == ["calculator", "search_conversations"]
    said = tool_messages(second)
    assert said[0]["content"] == "Let me work it out. "
    assert said[0]["tool_calls"] == [{"id": call["toolCallId"], "type": "function", "function": {
        "name": "calculator", "arguments": call["arguments"]}}]
    assert said[1] == {"role": "tool", "tool_call_id": call["toolCallId"],
                       "content": orjson.dumps(call["result"]).decode()}

    # The next turn's history carries the call and its result, in order, on the active branch.
    fake_provider.script(tokens=["Yes."], tool_calls=[])
    follow = await send(server, "Sure?", cid)
    await wait_for_status(server, cid, follow["assistantMessageId"])
    roles = [(message["role"], bool(message.get("tool_calls"))) for message in model_requests(fake_provider)[-1][
        "messages"] if message["role"] != "system"]
    assert roles == [("user", False), ("assistant", True), ("tool", False), ("assistant", False), ("user", False)]


async def test_parallel_calls_a_second_round_and_calls_the_model_got_wrong(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS=TOOLS)
    fake_provider.script(tool_calls=[
        [{"name": "calculator", "arguments": {"expression": "1+1"}},
         {"name": "slow_wait", "arguments": {"seconds": 0.2}},
         {"name": "calculator", "arguments": '{"expression": "2*'},
         {"name": "weather", "arguments": {"city": "Oslo"}},
         {"name": "slow_wait", "arguments": {"seconds": "long"}}],
        [{"name": "calculator", "arguments": {"expression": "10/4"}}],
    ], tokens=["Done."], argument_chunk=3)
    sent = await send(server, "go")
    cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
    reply = await wait_for_status(server, cid, reply_id)
    assert (reply["status"], reply["message"]) == ("completed", "Done.")
    made = await calls(server, cid)
    assert [(call["round"], call["name"], call["status"]) for call in made] == [
        (0, "calculator", "completed"), (0, "slow_wait", "completed"), (0, "calculator", "error"),
        (0, "weather", "error"), (0, "slow_wait", "error"), (1, "calculator", "completed")]
    assert made[0]["result"]["result"] == 2 and made[1]["result"] == {"waited": 0.2}
    assert made[2]["error"].startswith("arguments are not valid JSON")
    assert made[3]["error"].startswith("there is no tool 'weather' here")
    assert "seconds" in made[4]["error"] and made[5]["result"]["result"] == 2.5
    # The second round's request answered every call of the first, in order, each by its id.
    second = tool_messages(model_requests(fake_provider)[-2])
    assert [message["tool_call_id"] for message in second[1:]] == [call["toolCallId"] for call in made[:5]]
    assert second[3]["content"].startswith("error: arguments are not valid JSON")
    assert len(tool_messages(model_requests(fake_provider)[-1])) == 8


async def test_past_the_rounds_limit_the_reply_ends_as_an_error_naming_it(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_TOOL_ROUNDS="2")
    fake_provider.script(tool_calls=[[{"name": "calculator", "arguments": {"expression": f"{n}+1"}}]
                                     for n in range(3)], tokens=["never"])
    sent = await send(server, "loop")
    reply = await wait_for_status(server, sent["conversationId"], sent["assistantMessageId"])
    assert reply["status"] == "error" and "limit of 2 tool rounds" in reply["error"]
    made = await calls(server, sent["conversationId"])
    assert [call["status"] for call in made] == ["completed", "completed", "cancelled"]


async def test_a_failing_tool_is_retried_then_its_error_goes_to_the_model(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS=TOOLS)
    fake_provider.script(tool_calls=[[{"name": "flaky", "arguments": {"failures": 2}},
                                      {"name": "flaky", "arguments": {"failures": 50}}]], tokens=["ok"])
    sent = await send(server, "try")
    reply = await wait_for_status(server, sent["conversationId"], sent["assistantMessageId"])
    assert reply["status"] == "completed"
    recovered, failed = await calls(server, sent["conversationId"])
    assert (recovered["status"], recovered["result"]) == ("completed", {"attempts": 3})
    assert failed["status"] == "error"
    assert failed["error"] == "the tool failed after retries: attempt 4 could not reach the service"
    assert flaky.ATTEMPTS[failed["toolCallId"]] == 4, "the first run and three retries"
    results = [message["content"] for message in tool_messages(model_requests(fake_provider)[-1])[1:]]
    assert results == ['{"attempts":3}', f"error: {failed['error']}"]


@pytest.mark.parametrize(("how", "error"), [
    ("not_json", "the tool returned something that is not JSON"),
    ("hang", "the tool did not answer within 0.5 s"),
])
async def test_a_tool_that_misbehaves_ends_its_call_as_an_error_and_the_reply_goes_on(
    in_process: InProcessStarter, fake_provider: FakeProvider, how: str, error: str,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS=TOOLS)
    fake_provider.script(tool_calls=[[{"name": "misbehaving", "arguments": {"how": how}}]], tokens=["ok"])
    sent = await send(server, "misbehave")
    reply = await wait_for_status(server, sent["conversationId"], sent["assistantMessageId"])
    assert reply["status"] == "completed"
    [call] = await calls(server, sent["conversationId"])
    assert call["status"] == "error" and call["error"].startswith(error), call


async def test_stop_cancels_a_running_call_and_the_handler_sees_it(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS=TOOLS)
    fake_provider.script(tool_calls=[[{"text": "Waiting. "}, {"name": "slow_wait", "arguments": {"seconds": 30}}]],
                         tokens=["never"])
    sent = await send(server, "wait")
    cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
    [running] = await until_call(server, cid, "running")
    deadline = asyncio.get_running_loop().time() + 10
    while not (await calls(server, cid))[0].get("progress"):
        assert asyncio.get_running_loop().time() < deadline, "no progress shown"
        await asyncio.sleep(0.02)
    async with server.client() as client:
        stopped = await client.post(f"/api/conversations/{cid}/messages/{reply_id}/stop")
    assert stopped.status_code == 202, stopped.text
    reply = await wait_for_status(server, cid, reply_id)
    assert (reply["status"], reply["message"]) == ("stopped", "Waiting. ")
    [call] = await calls(server, cid)
    assert call["status"] == "cancelled"
    assert running["toolCallId"] in slow_wait.CANCELLED, "the handler saw the cancellation"
    assert len([r for r in model_requests(fake_provider) if tool_messages(r)]) == 0, "the model was not asked again"


async def test_a_call_that_needs_approval_waits_then_runs_once_approved(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS=TOOLS)
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/tmp/a"}}]], tokens=["Gone."])
    sent = await send(server, "delete it")
    cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
    [waiting] = await until_call(server, cid, "awaiting_approval")
    assert (await messages(server, cid))[1]["status"] == "streaming", "the reply waits with its call"
    assert "/tmp/a" not in delete_file.RAN
    async with server.client() as client:
        approved = await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/approve")
        again = await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/deny")
        not_a_call = await client.post(f"/api/conversations/{cid}/messages/{reply_id}/approve")
        unknown = await client.post(f"/api/conversations/{cid}/messages/nope/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] in ("pending", "running", "completed")
    assert again.status_code == 409 and "not awaiting approval" in again.json()["detail"]
    assert not_a_call.status_code == 404 and unknown.status_code == 404
    reply = await wait_for_status(server, cid, reply_id)
    assert (reply["status"], reply["message"]) == ("completed", "Gone.")
    assert delete_file.RAN.count("/tmp/a") == 1
    assert (await calls(server, cid))[0]["result"] == {"deleted": "/tmp/a"}


async def test_a_denied_call_tells_the_model_why_and_never_runs(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS=TOOLS)
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/tmp/b"}}]], tokens=["Kept."])
    sent = await send(server, "delete b")
    cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
    [waiting] = await until_call(server, cid, "awaiting_approval")
    async with server.client() as client:
        bad = await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/deny", json={"why": "x"})
        denied = await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/deny",
                                   json={"reason": "I still need it"})
    assert bad.status_code == 422 and "why" in bad.text
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    reply = await wait_for_status(server, cid, reply_id)
    assert reply["message"] == "Kept."
    assert "/tmp/b" not in delete_file.RAN
    said = tool_messages(model_requests(fake_provider)[-1])[1]
    assert said["content"] == "denied by the user: I still need it"


async def test_stop_cancels_a_waiting_approval_which_can_then_not_be_given(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS=TOOLS)
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/tmp/c"}}]], tokens=["no"])
    sent = await send(server, "delete c")
    cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
    [waiting] = await until_call(server, cid, "awaiting_approval")
    async with server.client() as client:
        stopped = await client.post(f"/api/conversations/{cid}/messages/{reply_id}/stop")
        late = await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/approve")
    assert stopped.status_code == 202
    assert late.status_code == 409
    assert (await wait_for_status(server, cid, reply_id))["status"] == "stopped"
    assert [call["status"] for call in await calls(server, cid)] == ["cancelled"]
    assert "/tmp/c" not in delete_file.RAN


async def test_a_waiting_approval_survives_a_restart_and_is_answered_after_it(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS=TOOLS)
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/tmp/d"}}]],
                         tokens=["After the restart."])
    sent = await send(server, "delete d")
    cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
    [waiting] = await until_call(server, cid, "awaiting_approval")
    await server.shutdown()
    again = await in_process(STREAMCHAT_TOOLS=TOOLS)
    assert [call["status"] for call in await calls(again, cid)] == ["awaiting_approval"]
    async with again.client() as client:
        approved = await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/approve")
    assert approved.status_code == 200
    reply = await wait_for_status(again, cid, reply_id)
    assert (reply["status"], reply["message"]) == ("completed", "After the restart.")
    assert delete_file.RAN.count("/tmp/d") == 1


async def test_another_keys_tool_call_is_not_found(in_process: InProcessStarter, fake_provider: FakeProvider) -> None:
    server = await in_process(STREAMCHAT_TOOLS=TOOLS, STREAMCHAT_API_KEYS="owner-key,other-key")
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/tmp/e"}}]], tokens=["x"])
    async with server.client(headers={"Authorization": "Bearer owner-key"}) as owner:
        sent = (await owner.post("/chat", json={"message": "delete e"})).json()
    cid = sent["conversationId"]
    deadline = asyncio.get_running_loop().time() + 20
    async with (server.client(headers={"Authorization": "Bearer owner-key"}) as owner,
                server.client(headers={"Authorization": "Bearer other-key"}) as other):
        while True:
            found = [m for m in (await owner.get(f"/api/conversations/{cid}")).json()["messages"]
                     if m["status"] == "awaiting_approval"]
            if found:
                break
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        refused = await other.post(f"/api/conversations/{cid}/messages/{found[0]['id']}/approve")
        assert refused.status_code == 404
        denied = await owner.post(f"/api/conversations/{cid}/messages/{found[0]['id']}/deny")
        assert denied.status_code == 200


async def test_the_readmes_tool_file_works_as_written(
    in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("\n## Tools\n"):]
    source = section[section.index("```python\n") + len("```python\n"):section.index("\n```\n")]
    package = tmp_path / "readme_tools"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "weather.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    server = await in_process(STREAMCHAT_TOOLS="readme_tools")
    fake_provider.script(tool_calls=[[{"name": "weather", "arguments": {"city": "Oslo"}},
                                      {"name": "weather", "arguments": {"city": " "}}]], tokens=["Clear."])
    sent = await send(server, "weather?")
    assert (await wait_for_status(server, sent["conversationId"], sent["assistantMessageId"]))["status"] == "completed"
    done, refused = await calls(server, sent["conversationId"])
    assert (done["status"], done["result"]) == ("completed", {"city": "Oslo", "sky": "clear"})
    assert (refused["status"], refused["error"]) == ("error", "which city?")


async def test_a_conversation_with_calls_exports_and_imports_whole(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    fake_provider.script(tool_calls=[[{"text": "Adding. "},
                                      {"name": "calculator", "arguments": {"expression": "1+2"}}]], tokens=["Three."])
    sent = await send(server, "1+2?")
    cid = sent["conversationId"]
    await wait_for_status(server, cid, sent["assistantMessageId"])
    async with server.client() as client:
        exported = (await client.get(f"/api/conversations/{cid}/export")).json()
        markdown = (await client.get(f"/api/conversations/{cid}/export", params={"format": "markdown"})).text
        imported = await client.post("/api/conversations/import", json={**exported, "conversationId": None})
    assert [message["from"] for message in exported["messages"]] == ["user", "assistant", "tool"]
    assert "### Tool call `calculator` (completed)" in markdown and '"result": 3' in markdown
    assert imported.status_code == 201, imported.text
    copy = await messages(server, imported.json()["conversationId"])
    original = await messages(server, cid)
    assert [(m["from"], m["message"], m.get("result")) for m in copy] == [
        (m["from"], m["message"], m.get("result")) for m in original]


@pytest.mark.parametrize("mode", ["reject", "interrupt"])
async def test_a_reply_waiting_for_an_approval_keeps_its_conversation_busy_per_the_busy_mode(
    in_process: InProcessStarter, fake_provider: FakeProvider, mode: str,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS=TOOLS, STREAMCHAT_BUSY_MODE=mode)
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/tmp/busy"}}]], tokens=["ok"])
    sent = await send(server, "delete busy")
    cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
    await until_call(server, cid, "awaiting_approval")
    async with server.client() as client:
        second = await client.post("/chat", json={"message": "and now?", "conversationId": cid})
    if mode == "reject":
        assert second.status_code == 409, second.text
        assert (await messages(server, cid))[1]["status"] == "streaming"
    else:
        assert second.status_code == 200, second.text
        assert (await wait_for_status(server, cid, reply_id))["status"] == "stopped"
        assert [call["status"] for call in await calls(server, cid) if call["parentId"] == reply_id] == ["cancelled"]


async def test_an_approval_the_bus_cannot_take_is_503_and_can_be_given_again(
    in_process: InProcessStarter, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS=TOOLS)
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/tmp/later"}}]], tokens=["ok"])
    sent = await send(server, "delete later")
    cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
    [waiting] = await until_call(server, cid, "awaiting_approval")
    bus = server.runtime.bus
    publish = bus.publish

    async def unreachable(event: object) -> None:
        raise Unavailable("the bus is away")

    monkeypatch.setattr(bus, "publish", unreachable)
    async with server.client() as client:
        refused = await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/approve")
        assert refused.status_code == 503, refused.text
        assert [call["status"] for call in await calls(server, cid)] == ["awaiting_approval"]
        monkeypatch.setattr(bus, "publish", publish)
        approved = await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/approve")
    assert approved.status_code == 200, approved.text
    assert (await wait_for_status(server, cid, reply_id))["status"] == "completed"
    assert delete_file.RAN.count("/tmp/later") == 1


async def test_the_conversations_tools_setting_is_what_the_model_is_offered(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS=TOOLS)
    fake_provider.script(tokens=["plain"], tool_calls=[])
    async with server.client() as client:
        only = (await client.post("/chat", json={"message": "a", "tools": ["calculator"]})).json()
        await wait_for_status(server, only["conversationId"], only["assistantMessageId"])
        offered = [tool["function"]["name"] for tool in model_requests(fake_provider)[-1]["tools"]]
        assert offered == ["calculator"]
        none = (await client.post("/chat", json={"message": "b", "tools": []})).json()
        await wait_for_status(server, none["conversationId"], none["assistantMessageId"])
        assert "tools" not in model_requests(fake_provider)[-1], "no tools at all: none are sent"
        every = (await client.post("/chat", json={"message": "c"})).json()
        await wait_for_status(server, every["conversationId"], every["assistantMessageId"])
        offered = [tool["function"]["name"] for tool in model_requests(fake_provider)[-1]["tools"]]
        assert offered == ["calculator", "search_conversations", "delete_file", "flaky", "misbehaving",
                           "slow_wait"]


async def test_search_conversations_in_the_loop_finds_only_the_callers_own(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_API_KEYS="key-alice,key-bob")
    alice = server.client(headers={"Authorization": "Bearer key-alice"})
    bob = server.client(headers={"Authorization": "Bearer key-bob"})
    async with alice, bob:
        fake_provider.script(tokens=["They walk."], tool_calls=[])
        for client, text in ((alice, "How do penguins migrate?"), (bob, "My secret penguins plan")):
            done = (await client.post("/chat", json={"message": text})).json()
            await wait_for_status(server, done["conversationId"], done["assistantMessageId"],
                                  headers={"Authorization": client.headers["Authorization"]})
        fake_provider.script(tool_calls=[[{"name": "search_conversations", "arguments": {"query": "penguins"}}]],
                             tokens=["Found it."])
        asked = (await alice.post("/chat", json={"message": "What did I ask about penguins?"})).json()
        cid = asked["conversationId"]
        await wait_for_status(server, cid, asked["assistantMessageId"],
                              headers={"Authorization": "Bearer key-alice"})
        shown = (await alice.get(f"/api/conversations/{cid}")).json()["messages"]
    [call] = [message for message in shown if message["from"] == "tool"]
    assert call["status"] == "completed", call
    titles = [hit["title"] for hit in call["result"]]
    assert any("penguins migrate" in title for title in titles), titles
    assert not any("secret" in title for title in titles), "never another key's conversation"
