"""Access control with API keys: who may call, who may read which conversation, and what stays secret."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from conftest import FakeProvider, InProcessStarter, Server, ServerFactory
from helpers import InProcessServer, until, wait_for_status
from test_motia_client import NodeWatcher, node  # noqa: F401  (node is a fixture)

ALICE, BOB, ADMIN = "alice-key-0123456789", "bob-key-9876543210", "admin-key-5555555555"


@pytest.fixture
def keyed(servers: ServerFactory) -> Server:
    return servers.start(STREAMCHAT_API_KEYS=f"{ALICE},{BOB}", STREAMCHAT_ADMIN_KEYS=ADMIN)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post(server: Server | InProcessServer, key: str | None, body: dict[str, object]) -> httpx.Response:
    async with server.client() as client:
        return await client.post("/chat", json=body, headers=bearer(key) if key else {})


@pytest.fixture
async def keyed_in_process(in_process: InProcessStarter) -> InProcessServer:
    return await in_process(STREAMCHAT_API_KEYS=f"{ALICE},{BOB}", STREAMCHAT_ADMIN_KEYS=ADMIN)


async def test_every_route_but_liveness_and_the_page_needs_a_key(keyed_in_process: InProcessServer) -> None:
    async with keyed_in_process.client() as client:
        for method, path in (("GET", "/api/conversations"), ("POST", "/chat"), ("GET", "/openapi.json"),
                             ("GET", "/api/models"),
                             ("GET", "/readyz"), ("GET", "/api/conversations/x"), ("GET", "/api/workbench/flow"),
                             ("GET", "/api/conversations/x/events"), ("POST", "/api/conversations/x/messages/y/stop")):
            response = await client.request(method, path)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["error"] == "unauthorized"
        wrong = await client.get("/api/conversations", headers=bearer("not-a-key"))
        assert wrong.status_code == 401 and "valid API key" in wrong.json()["detail"]
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/")).status_code == 200, "the page shell is public: it asks for a key itself"
        assert (await client.get("/api/conversations", headers=bearer(ALICE))).status_code == 200
        query_only = await client.get("/api/conversations", params={"authToken": ALICE})
        assert query_only.status_code == 401, "?authToken= is for WebSockets and SSE only"


async def test_keys_from_a_file_of_digests_and_a_clear_refusal_of_a_bad_file(
    servers: ServerFactory, tmp_path: Path,
) -> None:
    good = tmp_path / "keys.txt"
    good.write_text(f"# team keys\n{hashlib.sha256(ALICE.encode()).hexdigest()}\n\n")
    server = servers.start(STREAMCHAT_API_KEYS_FILE=str(good))
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/api/conversations", headers=bearer(ALICE))).status_code == 200
        assert (await client.get("/api/conversations", headers=bearer(BOB))).status_code == 401
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{ALICE}\n")
    with pytest.raises(RuntimeError, match="exited") as failure:
        servers.start(STREAMCHAT_API_KEYS_FILE=str(bad))
    assert f"{bad}:1: expected a sha256 hex digest" in str(failure.value)
    assert ALICE not in str(failure.value), "the refusal must not echo the key"


async def test_websockets_take_the_key_like_motia_clients_send_it(keyed: Server) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(keyed.ws_url)
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        await websockets.connect(keyed.ws_url, subprotocols=["Authorization", "wrong"])  # type: ignore[list-item]
    for connect in (lambda: websockets.connect(keyed.ws_url, subprotocols=["Authorization", ALICE]),  # type: ignore[list-item]
                    lambda: websockets.connect(f"{keyed.ws_url}?authToken={ALICE}")):
        socket = await connect()
        await socket.send(orjson.dumps({"type": "join", "data": {
            "streamName": "conversation", "groupId": str(uuid.uuid4()), "subscriptionId": "s"}}))
        assert orjson.loads(await socket.recv())["event"]["type"] == "sync"
        await socket.close()


async def test_a_conversation_is_invisible_to_other_keys(
    keyed: Server, fake_provider: FakeProvider, node: str,  # noqa: F811
) -> None:
    fake_provider.script(tokens=["private ", "reply"], delay=0.01)
    created = await post(keyed, ALICE, {"message": "alice's secret"})
    assert created.status_code == 200, created.text
    cid, mid = created.json()["conversationId"], created.json()["assistantMessageId"]
    async with httpx.AsyncClient(base_url=keyed.url, timeout=30) as client:
        await wait_for_status(keyed.url, cid, mid, headers=bearer(ALICE))
        for method, path in (("GET", f"/api/conversations/{cid}"),
                             ("POST", f"/api/conversations/{cid}/messages/{mid}/stop"),
                             ("POST", f"/api/conversations/{cid}/messages/{mid}/regenerate"),
                             ("GET", f"/api/conversations/{cid}/events?authToken={BOB}")):
            response = await client.request(method, path, headers=bearer(BOB) if "authToken" not in path else {})
            assert response.status_code == 404, (path, response.text)
            assert response.json()["error"] == "not_found"
        hijack = await post(keyed, BOB, {"message": "let me in", "conversationId": cid})
        assert hijack.status_code == 404 and "no such conversation" in hijack.json()["detail"]
        listed = (await client.get("/api/conversations", headers=bearer(BOB))).json()["conversations"]
        assert cid not in [c["conversationId"] for c in listed]
        mine = (await client.get("/api/conversations", headers=bearer(ALICE))).json()["conversations"]
        assert [c["conversationId"] for c in mine] == [cid]
        assert len((await client.get(f"/api/conversations/{cid}", headers=bearer(ALICE))).json()["messages"]) == 2

    # Bob's socket is refused the group and never sees an item of it, even as Alice goes on.
    socket = await websockets.connect(keyed.ws_url, subprotocols=["Authorization", BOB])  # type: ignore[list-item]
    await socket.send(orjson.dumps({"type": "join", "data": {
        "streamName": "conversation", "groupId": cid, "subscriptionId": "s"}}))
    denied = orjson.loads(await socket.recv())
    assert denied["event"] == {"type": "error", "error": {
        "code": "STREAM_ACCESS_DENIED", "message": f"no access to 'conversation' group {cid!r}"}}
    second = await post(keyed, ALICE, {"message": "still private", "conversationId": cid})
    await wait_for_status(keyed.url, cid, second.json()["assistantMessageId"], headers=bearer(ALICE))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(socket.recv(), 0.5)
    await socket.close()

    # Motia's own client, with Alice's key as Motia clients send it, follows her conversation.
    watcher = await NodeWatcher.start(node, keyed.ws_url, cid, "group", env={"STREAMCHAT_TOKEN": ALICE})
    result = await watcher.final()
    assert [item["message"] for item in result["state"]][:2] == ["alice's secret", "private reply"]


async def test_joining_a_new_conversation_first_claims_it(keyed: Server, fake_provider: FakeProvider) -> None:
    """Motia's clients join before they post: that join makes the id the joiner's."""
    cid = str(uuid.uuid4())
    socket = await websockets.connect(keyed.ws_url, subprotocols=["Authorization", ALICE])  # type: ignore[list-item]
    await socket.send(orjson.dumps({"type": "join", "data": {
        "streamName": "conversation", "groupId": cid, "subscriptionId": "s"}}))
    assert orjson.loads(await socket.recv())["event"]["type"] == "sync"
    assert (await post(keyed, BOB, {"message": "mine now?", "conversationId": cid})).status_code == 404
    assert (await post(keyed, ALICE, {"message": "mine", "conversationId": cid})).status_code == 200
    await socket.close()


async def test_what_spans_every_user_needs_an_admin_key(keyed: Server) -> None:
    async with httpx.AsyncClient(base_url=keyed.url, timeout=30) as client:
        for path in ("/api/admin/dead-letters", "/api/admin/stats", "/api/workbench/records",
                     "/api/workbench/traces", "/api/workbench/streams"):
            refused = await client.get(path, headers=bearer(ALICE))
            assert refused.status_code == 403 and refused.json()["error"] == "forbidden", path
            assert (await client.get(path, headers=bearer(ADMIN))).status_code == 200, path
        assert (await client.get("/api/workbench/flow", headers=bearer(ALICE))).status_code == 200
    for key, expected in ((ALICE, "error"), (ADMIN, "sync")):
        socket = await websockets.connect(keyed.ws_url, subprotocols=["Authorization", key])  # type: ignore[list-item]
        await socket.send(orjson.dumps({"type": "join", "data": {
            "streamName": "__workbench", "groupId": "log", "subscriptionId": "s"}}))
        assert orjson.loads(await socket.recv())["event"]["type"] == expected
        await socket.close()


async def test_an_open_server_on_a_public_address_warns_and_secrets_never_reach_the_logs(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    open_server = servers.start(STREAMCHAT_HOST="0.0.0.0")
    assert "without API keys" in open_server.logs()
    keyed = servers.start(STREAMCHAT_HOST="0.0.0.0", STREAMCHAT_API_KEYS=ALICE, STREAMCHAT_ADMIN_KEYS=ADMIN,
                          STREAMCHAT_LOG_LEVEL="DEBUG")
    assert "without API keys" not in keyed.logs()
    fake_provider.script(fail=[500, 500, 500, 500])
    failed = await post(keyed, ALICE, {"message": "make the provider fail"})
    await post(keyed, None, {"message": "no key"})
    async with httpx.AsyncClient(base_url=keyed.url) as client:
        await client.get("/api/conversations", headers=bearer("wrong-key-value"))
    body = failed.json()
    final = await wait_for_status(keyed.url, body["conversationId"], body["assistantMessageId"], headers=bearer(ALICE))
    assert final["status"] == "error"
    async with httpx.AsyncClient(base_url=keyed.url, headers=bearer(ADMIN)) as client:
        seen = {path: (await client.get(path)).text for path in (
            "/api/workbench/records", "/api/workbench/traces", "/api/admin/dead-letters", "/api/admin/stats",
            "/metrics", f"/api/conversations/{body['conversationId']}")}
    seen["logs"] = keyed.logs()
    for where, text in seen.items():
        for secret in (ALICE, ADMIN, "wrong-key-value", keyed.env["OPENAI_API_KEY"]):
            assert secret not in text, f"a secret reached {where}: {secret[:6]}…"
    assert os.environ.get("OPENAI_API_KEY", "sk-none") not in final.get("error", "")


# -- limits -------------------------------------------------------------------------------------

async def test_an_oversized_body_is_refused_before_anything_is_stored(keyed_in_process: InProcessServer) -> None:
    async with keyed_in_process.client(headers=bearer(ALICE)) as client:
        huge = orjson.dumps({"message": "x" * (300 * 1024)})
        refused = await client.post("/chat", content=huge, headers={"content-type": "application/json"})
        assert refused.status_code == 413 and refused.json()["error"] == "payload_too_large"

        async def chunks() -> object:
            for _ in range(300):
                yield b" " * 1024
        chunked = await client.post("/chat", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413, "a body without Content-Length is counted as it arrives"
        assert (await client.get("/api/conversations")).json()["conversations"] == []


async def test_the_message_length_limit_is_configurable_and_named(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_API_KEYS=ALICE, STREAMCHAT_MAX_MESSAGE_CHARS="100")
    refused = await post(server, ALICE, {"message": "x" * 101})
    assert refused.status_code == 422
    assert refused.json()["detail"] == "message: Value error, message is 101 characters; the limit is 100"
    assert (await post(server, ALICE, {"message": "x" * 100})).status_code == 200


async def test_messages_per_minute_per_key_then_429_with_retry_after(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_API_KEYS=f"{ALICE},{BOB}", STREAMCHAT_MESSAGES_PER_MINUTE="3",
                              STREAMCHAT_MAX_CONCURRENT_REPLIES="0")
    for _ in range(3):
        assert (await post(server, ALICE, {"message": "hi"})).status_code == 200
    refused = await post(server, ALICE, {"message": "one too many"})
    assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert (await post(server, BOB, {"message": "bob is not alice"})).status_code == 200


async def test_concurrent_replies_per_key_are_capped(in_process: InProcessStarter,
                                                     fake_provider: FakeProvider) -> None:
    server = await in_process(STREAMCHAT_API_KEYS=ALICE, STREAMCHAT_MAX_CONCURRENT_REPLIES="1")
    fake_provider.script(tokens=["held ", "reply"], hold=True)
    first = await post(server, ALICE, {"message": "first"})
    assert first.status_code == 200
    second = await post(server, ALICE, {"message": "second, while the first runs"})
    assert second.status_code == 429 and second.json()["error"] == "too_many_replies"
    assert second.headers["retry-after"] == "5"
    fake_provider.release()
    body = first.json()
    await wait_for_status(server, body["conversationId"], body["assistantMessageId"], headers=bearer(ALICE))
    answers: list[httpx.Response] = []

    async def third_accepted() -> bool:  # the slot frees as the reply ends
        answers.append(await post(server, ALICE, {"message": "third, after it finished"}))
        assert answers[-1].status_code in (200, 429), answers[-1].text
        return answers[-1].status_code == 200

    await until(third_accepted, "a reply accepted once the first one ended")


async def test_socket_limits_joins_frame_rate_and_frame_size(servers: ServerFactory) -> None:
    server = servers.start(STREAMCHAT_WS_MAX_JOINS="2", STREAMCHAT_WS_MESSAGES_PER_SECOND="5",
                           STREAMCHAT_WS_MAX_FRAME_BYTES="4096")
    async with websockets.connect(server.ws_url) as socket:
        codes = []
        for index in range(3):
            await socket.send(orjson.dumps({"type": "join", "data": {
                "streamName": "conversation", "groupId": f"g{index}", "subscriptionId": "s"}}))
            codes.append(orjson.loads(await socket.recv())["event"].get("error", {}).get("code", "sync"))
        assert codes == ["sync", "sync", "TOO_MANY_JOINS"]
    async with websockets.connect(server.ws_url) as socket:
        for _ in range(40):
            await socket.send(b"{}")
        replies = [orjson.loads(await socket.recv())["event"]["error"]["code"] for _ in range(40)]
        assert "RATE_LIMITED" in replies and "INVALID_MESSAGE" in replies, "bursts are cut, the socket stays"
    async with websockets.connect(server.ws_url) as socket:
        await socket.send("x" * 10_000)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, "an oversized frame closes the socket"
    assert (await httpx.AsyncClient().get(f"{server.url}/healthz")).status_code == 200


async def test_a_client_that_does_not_read_is_dropped_and_others_are_unaffected(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    # A frame per piece, so the flood really queues 20,000 frames for the socket that never reads.
    server = servers.start(STREAMCHAT_WS_OUTBOX="50", STREAMCHAT_WS_COMPRESSION="off", STREAMCHAT_DELTA_WINDOW_MS="0")
    fake_provider.script(count=20_000, delay=0)
    cid = str(uuid.uuid4())
    join = orjson.dumps({"type": "join", "data": {"streamName": "conversation", "groupId": cid,
                                                  "subscriptionId": "s", "delta": True}})
    stalled = await websockets.connect(server.ws_url, max_queue=1)
    await stalled.send(join)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        reply = (await client.post("/chat", json={"message": "flood", "conversationId": cid})).json()
    final = await wait_for_status(server.url, cid, reply["assistantMessageId"], timeout=60)
    assert final["status"] == "completed" and final["message"].count(" t") == 20_000

    async def dropped() -> bool:
        return "dropping a websocket client that does not read" in server.logs()

    await until(dropped, "the client that does not read dropped")
    await stalled.close()


# -- a provider that misbehaves ---------------------------------------------------------------------

@pytest.fixture
def strict(servers: ServerFactory) -> Server:
    return servers.start(STREAMCHAT_PROVIDER_TIMEOUT="1", STREAMCHAT_PROVIDER_TOTAL_TIMEOUT="2",
                         STREAMCHAT_PROVIDER_RETRIES="0")


@pytest.mark.parametrize(("script", "reason"), [
    ({"tokens": ["some ", "text "], "misbehave": "garbage"}, "provider sent a malformed stream chunk"),
    ({"tokens": ["a", "b"], "misbehave": "empty-choices"}, "the model returned an empty reply"),
    ({"misbehave": "no-newline"}, "provider sent a line longer than 1 MiB"),
    ({"count": 100_000, "delay": 0.005}, "the reply took longer than 2s"),
    ({"tokens": ["never"], "hold": True}, "provider timed out"),
])
async def test_a_misbehaving_provider_ends_the_reply_as_error(
    strict: Server, fake_provider: FakeProvider, script: dict[str, object], reason: str,
) -> None:
    fake_provider.script(**script)
    async with httpx.AsyncClient(base_url=strict.url, timeout=30) as client:
        body = (await client.post("/chat", json={"message": "misbehave"})).json()
    final = await wait_for_status(strict.url, body["conversationId"], body["assistantMessageId"], timeout=30)
    fake_provider.release()
    assert (final["status"], final["error"]) == ("error", reason)
    if script.get("misbehave") == "garbage":
        assert final["message"] == "some text ", "the text that did arrive is kept"
    assert (await httpx.AsyncClient().get(f"{strict.url}/healthz")).status_code == 200
