"""Managing conversations: rename, the paged list, and full-text search on SQLite and PostgreSQL.

In-process (httpx's ASGI transport, the app's real lifespan, the real fake provider and a real
database): these are contracts of the HTTP API, not of the process.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import FakeProvider, InProcessStarter
from helpers import InProcessServer, post_chat, wait_for_status
from streamchat.framework.store import SQLiteStore, StoredItem

ALICE, BOB = "alice-key-0123456789", "bob-key-9876543210"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def converse(server: InProcessServer, message: str, key: str | None = None,
                   conversation_id: str | None = None) -> dict[str, Any]:
    """Send a message and wait for its reply to finish; the POST's answer."""
    async with server.client(headers=bearer(key) if key else {}) as client:
        body: dict[str, Any] = {"message": message}
        if conversation_id is not None:
            body["conversationId"] = conversation_id
        response = await client.post("/chat", json=body)
        assert response.status_code == 200, response.text
        accepted: dict[str, Any] = response.json()
    await wait_for_status(server, accepted["conversationId"], accepted["assistantMessageId"],
                          headers=bearer(key) if key else None)
    return accepted


# -- rename ---------------------------------------------------------------------------------------

async def test_rename_answers_the_record_and_the_list_and_detail_show_the_title(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    accepted = await converse(server, "What is the capital of France?")
    cid = accepted["conversationId"]
    async with server.client() as client:
        renamed = await client.patch(f"/api/conversations/{cid}", json={"title": "Geography homework"})
        assert renamed.status_code == 200, renamed.text
        record = renamed.json()
        assert record["conversationId"] == cid and record["title"] == "Geography homework"
        assert set(record) == {"conversationId", "title", "createdAt", "updatedAt"}
        listed = (await client.get("/api/conversations")).json()["conversations"]
        assert [(c["conversationId"], c["title"]) for c in listed] == [(cid, "Geography homework")]
        assert (await client.get(f"/api/conversations/{cid}")).json()["title"] == "Geography homework"
        found = (await client.get("/api/conversations", params={"q": "homework"})).json()["conversations"]
        assert [(hit["conversationId"], hit["messageId"]) for hit in found] == [(cid, None)], "a title-only match"


@pytest.mark.parametrize(("body", "field"), [
    ({"title": ""}, "title"), ({"title": "   "}, "title"), ({"title": "x" * 201}, "title"), ({}, "title"),
    ({"title": 5}, "title"),
])
async def test_a_bad_title_is_refused_naming_the_field_and_nothing_changes(
    in_process: InProcessStarter, fake_provider: FakeProvider, body: dict[str, Any], field: str,
) -> None:
    server = await in_process()
    cid = (await converse(server, "keep my title"))["conversationId"]
    async with server.client() as client:
        refused = await client.patch(f"/api/conversations/{cid}", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "validation_error"
        assert [problem["field"] for problem in refused.json()["fields"]] == [field]
        assert (await client.get(f"/api/conversations/{cid}")).json()["title"] == "keep my title"


async def test_rename_of_another_keys_or_an_unknown_conversation_is_404(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_API_KEYS=f"{ALICE},{BOB}")
    cid = (await converse(server, "alice's secret plans", ALICE))["conversationId"]
    async with server.client() as client:
        for key, path in ((BOB, f"/api/conversations/{cid}"), (ALICE, "/api/conversations/no-such-id")):
            refused = await client.patch(path, json={"title": "mine now"}, headers=bearer(key))
            assert refused.status_code == 404 and refused.json()["error"] == "not_found", refused.text
        detail = (await client.get(f"/api/conversations/{cid}", headers=bearer(ALICE))).json()
    assert detail["title"] == "alice's secret plans"


# -- the paged list -------------------------------------------------------------------------------

async def test_the_list_comes_in_pages_newest_activity_first(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    ids = [(await converse(server, f"conversation number {n}"))["conversationId"] for n in range(5)]
    await converse(server, "the first one again", conversation_id=ids[0])  # it moves to the top
    expected = [ids[0], ids[4], ids[3], ids[2], ids[1]]
    async with server.client() as client:
        whole = (await client.get("/api/conversations")).json()
        assert [c["conversationId"] for c in whole["conversations"]] == expected and whole["nextCursor"] is None
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(3):
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/api/conversations", params=params)).json()
            seen += [c["conversationId"] for c in page["conversations"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
    assert seen == expected and cursor is None


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"), ({"limit": "many"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"q": ""}, "q"), ({"q": "x" * 201}, "q"),
])
async def test_bad_list_parameters_are_refused_naming_them(
    in_process: InProcessStarter, params: dict[str, str], field: str,
) -> None:
    server = await in_process()
    async with server.client() as client:
        refused = await client.get("/api/conversations", params=params)
    assert refused.status_code == 422, refused.text
    assert [problem["field"] for problem in refused.json()["fields"]] == [field]
    assert field in refused.json()["detail"]


async def test_a_search_cursor_is_not_a_list_cursor(in_process: InProcessStarter, fake_provider: FakeProvider) -> None:
    server = await in_process()
    for n in range(3):
        await converse(server, f"zebra number {n}")
    async with server.client() as client:
        searched = (await client.get("/api/conversations", params={"q": "zebra", "limit": "1"})).json()
        assert searched["nextCursor"]
        refused = await client.get("/api/conversations", params={"cursor": searched["nextCursor"]})
    assert refused.status_code == 422 and "cursor" in refused.json()["detail"]


# -- search ---------------------------------------------------------------------------------------

async def search_everything(server: InProcessServer, key: str | None = None) -> dict[str, Any]:
    """Conversations on distinct topics; what a set of queries finds, as (title, which message) lists."""
    topics = {
        "volcano": "Tell me about the Etna volcano eruption",
        "bread": "How long should sourdough bread rise?",
        "both": "Is bread baked on a volcano any good?",
        "accents": "Où est la crème brûlée?",
    }
    accepted = {name: await converse(server, text, key) for name, text in topics.items()}
    by_id = {entry["conversationId"]: name for name, entry in accepted.items()}
    async with server.client(headers=bearer(key) if key else {}) as client:
        await client.patch(f"/api/conversations/{accepted['accents']['conversationId']}", json={"title": "Dessert"})
        found: dict[str, Any] = {}
        for query in ("volcano", "bread volcano", "BREAD", "crème", "creme", "dessert", "fake provider",
                      "sourdough rise", "nothing-matches-this", "!!!"):
            page = (await client.get("/api/conversations", params={"q": query})).json()
            assert page["nextCursor"] is None
            found[query] = sorted(
                (by_id[hit["conversationId"]],
                 "title" if hit["messageId"] is None
                 else "user" if hit["messageId"] == accepted[by_id[hit["conversationId"]]]["userMessageId"]
                 else "reply")
                for hit in page["conversations"])
            for hit in page["conversations"]:
                assert hit["snippet"] and set(hit) == {"conversationId", "title", "createdAt", "updatedAt",
                                                       "snippet", "messageId"}
    return found


EXPECTED_FINDINGS = {
    "volcano": [("both", "user"), ("volcano", "user")],
    "bread volcano": [("both", "user")],
    "BREAD": [("both", "user"), ("bread", "user")],
    "crème": [("accents", "user")],
    "creme": [],
    "dessert": [("accents", "title")],
    "fake provider": [("accents", "reply"), ("both", "reply"), ("bread", "reply"), ("volcano", "reply")],
    "sourdough rise": [("bread", "user")],
    "nothing-matches-this": [],
    "!!!": [],
}


async def test_search_finds_the_same_on_sqlite_and_postgresql(
    in_process: InProcessStarter, fake_provider: FakeProvider, postgres_url: str,
) -> None:
    on_sqlite = await search_everything(await in_process())
    on_postgres = await search_everything(await in_process(STREAMCHAT_STATE_URL=postgres_url))
    assert on_sqlite == EXPECTED_FINDINGS
    assert on_postgres == on_sqlite


async def test_search_ranks_the_best_match_first_and_pages(
    in_process: InProcessStarter, fake_provider: FakeProvider, store_env: dict[str, str],
) -> None:
    server = await in_process(**store_env)
    weak = await converse(server, "a long message that mentions otters once among many many other words here")
    strong = await converse(server, "otters otters otters")
    async with server.client() as client:
        hits = (await client.get("/api/conversations", params={"q": "otters"})).json()["conversations"]
        assert [hit["conversationId"] for hit in hits] == [strong["conversationId"], weak["conversationId"]]
        assert hits[0]["messageId"] == strong["userMessageId"] and "otters" in hits[0]["snippet"]
        first = (await client.get("/api/conversations", params={"q": "otters", "limit": "1"})).json()
        second = (await client.get("/api/conversations",
                                   params={"q": "otters", "limit": "1", "cursor": first["nextCursor"]})).json()
    assert [page["conversations"][0]["conversationId"] for page in (first, second)] == [
        strong["conversationId"], weak["conversationId"]]
    assert second["nextCursor"] is None


async def test_search_sees_only_the_callers_conversations(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_API_KEYS=f"{ALICE},{BOB}")
    mine = await converse(server, "penguins are birds", ALICE)
    await converse(server, "penguins cannot fly", BOB)
    async with server.client(headers=bearer(ALICE)) as client:
        hits = (await client.get("/api/conversations", params={"q": "penguins"})).json()["conversations"]
        listed = (await client.get("/api/conversations")).json()["conversations"]
    assert [hit["conversationId"] for hit in hits] == [mine["conversationId"]]
    assert [entry["conversationId"] for entry in listed] == [mine["conversationId"]]


async def test_a_reply_is_searchable_once_it_ends(in_process: InProcessStarter, fake_provider: FakeProvider) -> None:
    server = await in_process()
    fake_provider.script(tokens=["Walruses ", "have ", "tusks."])
    accepted = await converse(server, "tell me about a big sea animal")
    async with server.client() as client:
        hits = (await client.get("/api/conversations", params={"q": "walruses tusks"})).json()["conversations"]
    assert [(hit["conversationId"], hit["messageId"]) for hit in hits] == [
        (accepted["conversationId"], accepted["assistantMessageId"])]


# -- upgrading ------------------------------------------------------------------------------------

async def test_conversations_kept_before_the_catalog_are_listed_and_searchable(
    in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    """A database written by an earlier version: records in state, messages in the stream."""
    path = tmp_path / "earlier.db"
    store = SQLiteStore(str(path))
    await store.connect()
    cid = str(uuid.uuid4())
    await store.state_set("conversations", cid, {"conversationId": cid, "title": "Old times",
                                                 "createdAt": "2026-11-01T10:00:00.000Z",
                                                 "updatedAt": "2026-11-01T10:00:05.000Z"})
    for seq, (item_id, sender, text) in enumerate([("u1", "user", "remember the aardvark"),
                                                   ("a1", "assistant", "An aardvark eats ants.")], start=1):
        await store.put_item("conversation", cid, StoredItem(item_id, {
            "message": text, "from": sender, "status": "completed", "timestamp": "2026-11-01T10:00:00.000Z"}, seq))
    await store.disconnect()

    server = await in_process(STREAMCHAT_STATE_URL=f"sqlite:///{path}")
    async with server.client() as client:
        listed = (await client.get("/api/conversations")).json()["conversations"]
        assert [(c["conversationId"], c["title"], c["updatedAt"]) for c in listed] == [
            (cid, "Old times", "2026-11-01T10:00:05.000Z")]
        hits = (await client.get("/api/conversations", params={"q": "aardvark ants"})).json()["conversations"]
        assert [(hit["conversationId"], hit["messageId"]) for hit in hits] == [(cid, "a1")]
    newer = await post_chat(server, "and now something new")
    await wait_for_status(server, newer["conversationId"], newer["assistantMessageId"])
    async with server.client() as client:
        listed = (await client.get("/api/conversations")).json()["conversations"]
    assert [c["conversationId"] for c in listed] == [newer["conversationId"], cid]


def test_cursors_are_opaque_but_not_forgeable_into_errors() -> None:
    """A cursor made of anything decodes to a clear refusal, never an exception of another kind."""
    from streamchat.catalog.base import BadCursor, decode_cursor, encode_cursor

    assert decode_cursor("recent", encode_cursor("recent", ["t", "id"]), 2) == ["t", "id"]
    for forged in ("", "%%%", "bm90IGpzb24", orjson.dumps(["recent"]).hex(),
                   encode_cursor("search", [3]), encode_cursor("recent", ["only one"])):
        with pytest.raises(BadCursor):
            decode_cursor("recent", forged, 2)


# -- delete ---------------------------------------------------------------------------------------

async def test_delete_removes_everything_and_the_id_can_start_afresh(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    first = await converse(server, "a conversation about quokkas")
    cid = first["conversationId"]
    await converse(server, "more about quokkas", conversation_id=cid)
    kept = await converse(server, "quokkas elsewhere")
    async with server.client() as client:
        gone = await client.delete(f"/api/conversations/{cid}")
        assert gone.status_code == 204 and gone.content == b""
        assert (await client.get(f"/api/conversations/{cid}")).status_code == 404
        assert (await client.delete(f"/api/conversations/{cid}")).status_code == 404, "deleted once"
        listed = (await client.get("/api/conversations")).json()["conversations"]
        assert [c["conversationId"] for c in listed] == [kept["conversationId"]]
        hits = (await client.get("/api/conversations", params={"q": "quokkas"})).json()["conversations"]
        assert [hit["conversationId"] for hit in hits] == [kept["conversationId"]]
    again = await converse(server, "starting over", conversation_id=cid)
    async with server.client() as client:
        detail = (await client.get(f"/api/conversations/{cid}")).json()
    assert [m["id"] for m in detail["messages"]] == [again["userMessageId"], again["assistantMessageId"]]
    assert detail["title"] == "starting over"


async def test_delete_of_another_keys_or_an_unknown_conversation_is_404_and_keeps_it(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_API_KEYS=f"{ALICE},{BOB}")
    cid = (await converse(server, "alice keeps this", ALICE))["conversationId"]
    async with server.client() as client:
        for key, target in ((BOB, cid), (ALICE, "never-used")):
            refused = await client.delete(f"/api/conversations/{target}", headers=bearer(key))
            assert refused.status_code == 404 and refused.json()["error"] == "not_found"
        detail = await client.get(f"/api/conversations/{cid}", headers=bearer(ALICE))
        assert detail.status_code == 200 and len(detail.json()["messages"]) == 2
        assert (await client.delete(f"/api/conversations/{cid}", headers=bearer(ALICE))).status_code == 204
        taken = await client.post("/chat", json={"message": "bob may use the id now", "conversationId": cid},
                                  headers=bearer(BOB))
        assert taken.status_code == 200, "a deleted conversation's id is free for anyone"
