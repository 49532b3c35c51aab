"""The HTTP contract of POST /chat and the conversation endpoints, against a real server."""

from __future__ import annotations

import uuid

import httpx
import pytest

from conftest import Server
from helpers import post_chat, wait_for_status


@pytest.fixture
def client(server: Server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_post_chat_answers_at_once_with_the_documented_body(client: httpx.Client) -> None:
    response = client.post("/chat", json={"message": "Hello there"})
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Message received, AI is responding..."
    assert body["status"] == "streaming"
    assert uuid.UUID(body["conversationId"]).version == 4
    assert body["userMessageId"] != body["assistantMessageId"]
    assert body["__motia"] == {"type": "state-stream", "streamName": "conversation",
                               "groupId": body["conversationId"], "id": body["assistantMessageId"]}
    assert response.headers["x-trace-id"]


async def test_conversation_detail_lists_messages_in_order(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        first = (await client.post("/chat", json={"message": "first question"})).json()
        cid = first["conversationId"]
        await wait_for_status(server.url, cid, first["assistantMessageId"])
        second = (await client.post("/chat", json={"message": "second question", "conversationId": cid})).json()
        assert second["conversationId"] == cid
        await wait_for_status(server.url, cid, second["assistantMessageId"])
        detail = (await client.get(f"/api/conversations/{cid}")).json()
    assert detail["conversationId"] == cid
    messages = detail["messages"]
    assert [m["id"] for m in messages] == [first["userMessageId"], first["assistantMessageId"],
                                           second["userMessageId"], second["assistantMessageId"]]
    assert [m["from"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert [m["status"] for m in messages] == ["completed"] * 4
    assert messages[0]["message"] == "first question"
    assert messages[1]["message"] == "Hello! I am the fake provider."
    for message in messages:
        assert {"id", "message", "from", "status", "timestamp", "seq"} <= message.keys()


async def test_unseen_conversation_id_is_created_and_listed_newest_first(server: Server) -> None:
    older = f"older-{uuid.uuid4()}"
    newer = f"newer-{uuid.uuid4()}"
    for cid, text in ((older, "the older one"), (newer, "the newer one")):
        accepted = await post_chat(server.url, text, cid)
        assert accepted["conversationId"] == cid
        await wait_for_status(server.url, cid, accepted["assistantMessageId"])
    conversations = httpx.get(f"{server.url}/api/conversations").json()["conversations"]
    ids = [c["conversationId"] for c in conversations]
    assert ids.index(newer) < ids.index(older)
    record = conversations[ids.index(newer)]
    assert record["title"] == "the newer one"
    assert {"conversationId", "title", "updatedAt", "createdAt"} <= record.keys()
    timestamps = [c["updatedAt"] for c in conversations]
    assert timestamps == sorted(timestamps, reverse=True)


def test_unknown_conversation_is_404_in_the_error_shape(client: httpx.Client) -> None:
    response = client.get("/api/conversations/does-not-exist")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "does-not-exist" in response.json()["detail"]


def test_unknown_route_is_a_json_404(client: httpx.Client) -> None:
    response = client.get("/no/such/route")
    assert response.status_code == 404
    assert set(response.json()) >= {"error", "detail"}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b"[]", 422, "body"),
        (b'{"conversationId": "abc"}', 422, "message"),
        (b'{"message": ""}', 422, "message"),
        (b'{"message": "   \\n\\t "}', 422, "message"),
        (b'{"message": 42}', 422, "message"),
        (b'{"message": null}', 422, "message"),
        (b'{"message": "hi", "conversationId": 7}', 422, "conversationId"),
        (b'{"message": "hi", "conversationId": ""}', 422, "conversationId"),
        (b'{"message": "hi", "conversationId": "has spaces/and slashes"}', 422, "conversationId"),
    ],
)
def test_bad_input_is_a_clear_4xx_naming_the_field(
    client: httpx.Client, body: bytes, status: int, field: str | None
) -> None:
    before = client.get("/api/conversations").json()["conversations"]
    response = client.post("/chat", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] in ("invalid_json", "validation_error")
    assert payload["detail"]
    if field is not None:
        assert field in payload["detail"]
    assert client.get("/api/conversations").json()["conversations"] == before


def test_oversized_message_is_refused_and_the_limit_is_inclusive(client: httpx.Client) -> None:
    too_long = client.post("/chat", json={"message": "x" * 32_001})
    assert too_long.status_code == 422
    assert "message" in too_long.json()["detail"]
    assert client.post("/chat", json={"message": "x" * 32_000}).status_code == 200


def test_openapi_documents_the_chat_body(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    chat = spec["paths"]["/chat"]["post"]
    schema = chat["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["message"]
    assert "/api/conversations/{conversationId}" in spec["paths"]


def test_the_chat_page_and_its_assets_are_served(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/markdown.js", "/static/style.css"):
        assert asset in page.text
        assert client.get(asset).status_code == 200
    assert "cdn" not in page.text.lower()
