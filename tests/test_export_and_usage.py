"""Export and import of a conversation, and what replies cost (usage on the reply, /api/usage, metrics).

In-process (httpx's ASGI transport, the app's real lifespan, the real fake provider and a real
database): contracts of the HTTP API.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import FakeProvider, InProcessStarter, ServerFactory
from helpers import InProcessServer, wait_for_status
from test_conversations import ALICE, BOB, bearer, converse

ADMIN = "admin-key-5555555555"


async def exported(server: InProcessServer, cid: str, key: str | None = None, fmt: str = "json") -> Any:
    async with server.client(headers=bearer(key) if key else {}) as client:
        response = await client.get(f"/api/conversations/{cid}/export", params={"format": fmt})
    assert response.status_code == 200, response.text
    return response


# -- export and import -------------------------------------------------------------------------------

async def test_an_export_imports_back_as_the_same_conversation(
    in_process: InProcessStarter, fake_provider: FakeProvider, store_env: dict[str, str],
) -> None:
    server = await in_process(**store_env)
    first = await converse(server, "Tell me about axolotls")
    cid = first["conversationId"]
    await converse(server, "And their gills?", conversation_id=cid)
    async with server.client() as client:
        await client.patch(f"/api/conversations/{cid}", json={"title": "Axolotl notes"})
        original = (await client.get(f"/api/conversations/{cid}")).json()
    response = await exported(server, cid)
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["content-disposition"] == f'attachment; filename="conversation-{cid}.json"'
    document = response.json()
    assert document["format"] == "streamchat.conversation" and document["version"] == 1
    assert document["conversationId"] == cid and document["title"] == "Axolotl notes"
    assert [m["id"] for m in document["messages"]] == [m["id"] for m in original["messages"]]
    assert [m["message"] for m in document["messages"]] == [m["message"] for m in original["messages"]]
    assert all("usage" in m for m in document["messages"] if m["from"] == "assistant")

    async with server.client() as client:
        # Its id is taken (the original is still there): a new id, everything else the same.
        copied = await client.post("/api/conversations/import", json=document)
        assert copied.status_code == 201, copied.text
        copy_id = copied.json()["conversationId"]
        assert copy_id != cid and copied.json()["title"] == "Axolotl notes"
        copy = (await client.get(f"/api/conversations/{copy_id}")).json()
        strip = [{k: v for k, v in m.items() if k != "seq"} for m in original["messages"]]
        assert [{k: v for k, v in m.items() if k != "seq"} for m in copy["messages"]] == strip
        again = (await client.get(f"/api/conversations/{copy_id}/export")).json()
        assert {**again, "conversationId": cid, "exportedAt": None} == {**document, "exportedAt": None}
        found = (await client.get("/api/conversations", params={"q": "gills"})).json()["conversations"]
        assert {hit["conversationId"] for hit in found} == {cid, copy_id}, "an import is searchable"

        # Once the original is gone, its id is free and the import keeps it.
        assert (await client.delete(f"/api/conversations/{cid}")).status_code == 204
        restored = await client.post("/api/conversations/import", json=document)
        assert restored.status_code == 201 and restored.json()["conversationId"] == cid
        assert [m["message"] for m in (await client.get(f"/api/conversations/{cid}")).json()["messages"]] == \
            [m["message"] for m in original["messages"]]
        # The imported conversation goes on like any other.
        more = await client.post("/chat", json={"message": "Do they regrow limbs?", "conversationId": cid})
        assert more.status_code == 200
    await wait_for_status(server, cid, more.json()["assistantMessageId"])


async def test_the_markdown_export_is_a_readable_transcript(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tokens=["Here", " is", " a", " **table**:\n\n| a | b |\n|---|---|\n| 1 | 2 |"])
    server = await in_process()
    cid = (await converse(server, "Show me a table"))["conversationId"]
    response = await exported(server, cid, fmt="markdown")
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="conversation-{cid}.md"'
    text = response.text
    assert text.startswith("# Show me a table\n")
    assert text.index("## User") < text.index("Show me a table\n", 5) < text.index("## Assistant")
    assert "Here is a **table**:\n\n| a | b |\n|---|---|\n| 1 | 2 |" in text
    assert f" · {fake_provider.requests()[-1]['model']}_\n" in text, "the reply's model is under its heading"


async def test_two_imports_of_one_export_at_once_get_different_ids(
    in_process: InProcessStarter, fake_provider: FakeProvider, store_env: dict[str, str],
) -> None:
    server = await in_process(**store_env)
    document = {"conversationId": "shared-id", "title": "twice", "messages": [
        {"id": "m1", "from": "user", "message": "hi", "status": "completed", "timestamp": "2026-01-01T00:00:00Z"}]}
    async with server.client() as client:
        answers = await asyncio.gather(*(client.post("/api/conversations/import", json=document) for _ in range(4)))
        assert [answer.status_code for answer in answers] == [201] * 4
        ids = [answer.json()["conversationId"] for answer in answers]
        assert ids.count("shared-id") == 1 and len(set(ids)) == 4
        for cid in ids:
            messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
            assert [(m["id"], m["message"]) for m in messages] == [("m1", "hi")]


async def test_an_import_leaves_an_unowned_conversation_with_its_id_unowned(
    servers: ServerFactory, tmp_path: Path,
) -> None:
    """A conversation written while the server ran open has no owner; importing an export that names its
    id (with keys on) gets a new id and must not make the original the importer's."""
    state = {"STREAMCHAT_STATE_URL": f"sqlite:///{tmp_path / 'open-then-keyed.db'}"}
    opened = servers.start(**state)
    document = {"conversationId": "written-open", "title": "open", "messages": [
        {"id": "m1", "from": "user", "message": "hi", "status": "completed", "timestamp": "2026-01-01T00:00:00Z"}]}
    async with httpx.AsyncClient(base_url=opened.url) as client:
        assert (await client.post("/api/conversations/import", json=document)).status_code == 201
    opened.stop()
    keyed = servers.start(**state, STREAMCHAT_API_KEYS=f"{ALICE},{BOB}")
    async with httpx.AsyncClient(base_url=keyed.url) as client:
        imported = await client.post("/api/conversations/import", json=document, headers=bearer(ALICE))
        assert imported.status_code == 201 and imported.json()["conversationId"] != "written-open"
        # Still nobody's: the first key to use it takes it, and that is Bob here, not the importer.
        taken = await client.post("/chat", json={"message": "mine?", "conversationId": "written-open"},
                                  headers=bearer(BOB))
        assert taken.status_code == 200, taken.text


async def test_an_import_of_a_reply_that_was_streaming_comes_back_stopped(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    document = {"title": "cut off", "messages": [
        {"id": "u", "from": "user", "message": "write a poem", "status": "completed",
         "timestamp": "2026-01-01T00:00:00.000Z"},
        {"id": "a", "from": "assistant", "message": "Roses are", "status": "streaming",
         "timestamp": "2026-01-01T00:00:01.000Z"}]}
    async with server.client() as client:
        created = await client.post("/api/conversations/import", json=document)
        assert created.status_code == 201
        record = created.json()
        assert record["createdAt"] == "2026-01-01T00:00:00.000Z" and record["updatedAt"] == "2026-01-01T00:00:01.000Z"
        messages = (await client.get(f"/api/conversations/{record['conversationId']}")).json()["messages"]
    assert [(m["id"], m["status"]) for m in messages] == [("u", "completed"), ("a", "stopped")]


MESSAGE = {"id": "m1", "from": "user", "message": "hi", "status": "completed", "timestamp": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(("body", "field"), [
    ({"messages": [MESSAGE]}, "title"),
    ({"title": "", "messages": [MESSAGE]}, "title"),
    ({"title": "t"}, "messages"),
    ({"title": "t", "messages": [MESSAGE, MESSAGE]}, "messages"),
    ({"title": "t", "messages": [{**MESSAGE, "from": "robot"}]}, "messages.0.from"),
    ({"title": "t", "messages": [{**MESSAGE, "timestamp": "yesterday"}]}, "messages.0.timestamp"),
    ({"title": "t", "messages": [{**MESSAGE, "id": "no spaces please"}]}, "messages.0.id"),
    ({"title": "t", "messages": [{k: v for k, v in MESSAGE.items() if k != "message"}]}, "messages.0.message"),
    ({"title": "t", "conversationId": "a/b", "messages": [MESSAGE]}, "conversationId"),
    ({"title": "t", "format": "something-else", "messages": [MESSAGE]}, "format"),
    ({"title": "t", "version": 2, "messages": [MESSAGE]}, "version"),
])
async def test_a_malformed_import_is_refused_naming_the_field_and_stores_nothing(
    in_process: InProcessStarter, fake_provider: FakeProvider, body: dict[str, Any], field: str,
) -> None:
    server = await in_process()
    async with server.client() as client:
        refused = await client.post("/api/conversations/import", json=body)
        assert refused.status_code == 422, refused.text
        assert [problem["field"] for problem in refused.json()["fields"]] == [field]
        assert (await client.get("/api/conversations")).json()["conversations"] == []


async def test_an_import_larger_than_its_limit_is_413_and_its_limit_is_its_own(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_MAX_IMPORT_BYTES="4096", STREAMCHAT_MAX_BODY_BYTES="2048")
    big = {"title": "big", "messages": [{**MESSAGE, "message": "x" * 3000}]}
    huge = {"title": "huge", "messages": [{**MESSAGE, "message": "x" * 5000}]}
    async with server.client() as client:
        assert (await client.post("/api/conversations/import", json=big)).status_code == 201, \
            "over the general limit but within the import's"
        assert (await client.post("/api/conversations/import", json=huge)).status_code == 413
        assert (await client.post("/chat", json={"message": "x" * 3000})).status_code == 413


async def test_bad_export_format_and_other_keys_conversations(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_API_KEYS=f"{ALICE},{BOB}")
    cid = (await converse(server, "alice's export", ALICE))["conversationId"]
    async with server.client() as client:
        bad = await client.get(f"/api/conversations/{cid}/export", params={"format": "pdf"}, headers=bearer(ALICE))
        assert bad.status_code == 422 and [p["field"] for p in bad.json()["fields"]] == ["format"]
        for key, target in ((BOB, cid), (ALICE, "no-such-conversation")):
            refused = await client.get(f"/api/conversations/{target}/export", headers=bearer(key))
            assert refused.status_code == 404 and refused.json()["error"] == "not_found"
        document = (await client.get(f"/api/conversations/{cid}/export", headers=bearer(ALICE))).json()
        # Bob imports Alice's export: her id is hers, so he gets a new one, and hers is untouched.
        taken = await client.post("/api/conversations/import", json=document, headers=bearer(BOB))
        assert taken.status_code == 201 and taken.json()["conversationId"] != cid
        assert (await client.get(f"/api/conversations/{cid}", headers=bearer(BOB))).status_code == 404
        mine = (await client.get("/api/conversations", headers=bearer(BOB))).json()["conversations"]
        assert [c["conversationId"] for c in mine] == [taken.json()["conversationId"]]
        assert len((await client.get(f"/api/conversations/{cid}", headers=bearer(ALICE))).json()["messages"]) == 2


# -- usage -----------------------------------------------------------------------------------------

async def test_every_reply_carries_the_usage_the_provider_reported(
    in_process: InProcessStarter, fake_provider: FakeProvider, store_env: dict[str, str],
) -> None:
    fake_provider.script(tokens=["one", " two", " three"], prompt_tokens=17, ttft=0.05)
    server = await in_process(**store_env)
    asked = time.monotonic()
    accepted = await converse(server, "count for me")
    waited_ms = (time.monotonic() - asked) * 1000
    async with server.client() as client:
        reply = (await client.get(f"/api/conversations/{accepted['conversationId']}")).json()["messages"][1]
    reported = fake_provider.requests()
    assert reported[-1]["stream_options"] == {"include_usage": True}
    usage = reply["usage"]
    assert usage["promptTokens"] == 17 and usage["completionTokens"] == 3
    assert usage["model"] == reported[-1]["model"]
    # The provider waited 50 ms before its first token; the reply took no longer than the test waited
    # for it (milliseconds, not another unit; how fast it was is the benchmark's business).
    assert 50 <= usage["timeToFirstTokenMs"] <= usage["durationMs"] <= waited_ms + 1
    assert set(usage) == {"promptTokens", "completionTokens", "model", "timeToFirstTokenMs", "durationMs"}


async def test_a_provider_that_reports_no_usage_leaves_the_counts_null(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(usage=False)
    server = await in_process()
    accepted = await converse(server, "no usage please")
    async with server.client() as client:
        reply = (await client.get(f"/api/conversations/{accepted['conversationId']}")).json()["messages"][1]
        totals = (await client.get("/api/usage")).json()["models"]
    assert reply["usage"]["promptTokens"] is None and reply["usage"]["completionTokens"] is None
    assert reply["usage"]["durationMs"] >= 0
    assert [(t["replies"], t["promptTokens"], t["completionTokens"]) for t in totals] == [(1, 0, 0)]


async def test_usage_totals_by_key_by_period_and_for_an_admin(
    in_process: InProcessStarter, fake_provider: FakeProvider, store_env: dict[str, str],
) -> None:
    server = await in_process(**store_env, STREAMCHAT_API_KEYS=f"{ALICE},{BOB}", STREAMCHAT_ADMIN_KEYS=ADMIN)
    fake_provider.script(tokens=["a", "b"], prompt_tokens=10)
    await converse(server, "alice one", ALICE)
    await converse(server, "alice two", ALICE)
    fake_provider.script(tokens=["a", "b", "c", "d"], prompt_tokens=100)
    await converse(server, "bob one", BOB)
    reported = sum(stream["usage"]["completion_tokens"] for stream in fake_provider_streams(fake_provider))
    async with server.client() as client:
        async def totals(key: str, **params: str) -> list[tuple[int, int, int]]:
            answer = await client.get("/api/usage", params=params, headers=bearer(key))
            assert answer.status_code == 200, answer.text
            return [(m["replies"], m["promptTokens"], m["completionTokens"]) for m in answer.json()["models"]]

        assert await totals(ALICE) == [(2, 20, 4)]
        assert await totals(BOB) == [(1, 100, 4)]
        assert await totals(ADMIN) == [(3, 120, 8)] and reported == 8
        assert await totals(ADMIN, since="2000-01-01", until="2100-01-01T00:00:00+02:00") == [(3, 120, 8)]
        assert await totals(ADMIN, since="2100-01-01T00:00:00Z") == []
        assert await totals(ADMIN, until="2000-01-01") == []
        for params, field in (({"since": "last week"}, "since"), ({"until": "2026-13-01"}, "until"),
                              ({"since": "2026-02-01", "until": "2026-01-01"}, "until")):
            refused = await client.get("/api/usage", params=params, headers=bearer(ALICE))
            assert refused.status_code == 422 and [p["field"] for p in refused.json()["fields"]] == [field]
        # Deleting a conversation does not undo what its replies cost.
        cid = (await client.get("/api/conversations", headers=bearer(BOB))).json()["conversations"][0]["conversationId"]
        assert (await client.delete(f"/api/conversations/{cid}", headers=bearer(BOB))).status_code == 204
        assert await totals(BOB) == [(1, 100, 4)]
        metrics = (await client.get("/metrics", headers=bearer(ADMIN))).text
    model = fake_provider.requests()[-1]["model"]
    assert f'streamchat_model_tokens_total{{kind="completion",model="{model}"}}' in metrics


def fake_provider_streams(fake_provider: FakeProvider) -> list[dict[str, Any]]:
    import httpx

    return list(httpx.get(f"{fake_provider.url}/control/requests").json()["streams"])
