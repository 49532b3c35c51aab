"""One rule for text in every store: a NUL character is refused where it comes in, never a 500."""

from __future__ import annotations

import uuid

import httpx
import orjson
import websockets

from conftest import FakeProvider, ServerFactory


async def test_a_nul_is_refused_the_same_way_on_every_store(
    servers: ServerFactory, fake_provider: FakeProvider, store_env: dict[str, str],
) -> None:
    server = servers.start(**store_env)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        cid = str(uuid.uuid4())
        kept = await client.post("/chat", json={"message": "before", "conversationId": cid})
        assert kept.status_code == 200

        refused = await client.post("/chat", json={"message": "a\u0000b", "conversationId": cid})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "validation_error" and "message" in refused.json()["detail"]
        assert refused.json()["fields"][0] == {"field": "message", "type": "nul_character",
                                               "message": "contains a NUL character (U+0000), which cannot be stored"}
        in_the_id = await client.post("/chat", json={"message": "hi", "conversationId": "x\u0000y"})
        assert in_the_id.status_code == 422 and in_the_id.json()["fields"][0]["field"] == "conversationId"

        for path in ("/api/conversations/%FF%00", "/api/conversations/a%00b", "/api/conversations/a%00b/events",
                     "/api/conversations/a%00b/messages/m/stop"):
            answer = await (client.post(path) if path.endswith("stop") else client.get(path))
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["error"] == "not_found"
        query = await client.get("/api/conversations", params={"q": "a\u0000"})
        assert query.status_code == 422 and query.json()["fields"][0]["field"] == "q", query.text

        messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
        assert [m["message"] for m in messages][:1] == ["before"], "nothing stored was touched"

    async with websockets.connect(server.ws_url) as socket:
        await socket.send(orjson.dumps({"type": "join", "data": {
            "streamName": "conversation", "groupId": "a\u0000b", "subscriptionId": "s"}}))
        answer = orjson.loads(await socket.recv())
        assert answer["event"]["type"] == "error" and "NUL" in str(answer), answer
