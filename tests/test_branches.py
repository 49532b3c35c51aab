"""The message tree over HTTP: edit and regenerate keep every branch, the active branch is the
server's (GET, PUT .../active), the model reads the branch it answers and nothing else, and a tree
round-trips through export and import. In-process: real HTTP semantics, the real fake provider."""

from __future__ import annotations

from typing import Any

from conftest import FakeProvider, InProcessStarter
from helpers import InProcessServer, wait_for_status
from streamchat.conversations.messages import ConversationMessage
from streamchat.framework import Stream

OTHER_KEY, KEY = "k-branch-other", "k-branch-1"


async def send(server: InProcessServer, message: str, cid: str | None = None, **extra: Any) -> dict[str, Any]:
    async with server.client() as client:
        answer = await client.post("/chat", json={"message": message, **({"conversationId": cid} if cid else {}),
                                                  **extra})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    await wait_for_status(server, body["conversationId"], body["assistantMessageId"])
    return body


async def regenerate(server: InProcessServer, cid: str, reply_id: str, **body: Any) -> dict[str, Any]:
    async with server.client() as client:
        answer = await client.post(f"/api/conversations/{cid}/messages/{reply_id}/regenerate", json=body or None)
    assert answer.status_code == 202, answer.text
    made: dict[str, Any] = answer.json()
    await wait_for_status(server, cid, made["assistantMessageId"])
    return made


async def edit(server: InProcessServer, cid: str, message_id: str, message: str) -> dict[str, Any]:
    async with server.client() as client:
        answer = await client.post(f"/api/conversations/{cid}/messages/{message_id}/edit", json={"message": message})
    assert answer.status_code == 202, answer.text
    made: dict[str, Any] = answer.json()
    assert set(made) == {"conversationId", "userMessageId", "assistantMessageId"}
    await wait_for_status(server, cid, made["assistantMessageId"])
    return made


async def conversation(server: InProcessServer, cid: str, everything: bool = False) -> dict[str, Any]:
    async with server.client() as client:
        answer = await client.get(f"/api/conversations/{cid}", params={"all": "true"} if everything else {})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def switch(server: InProcessServer, cid: str, message_id: str) -> dict[str, Any]:
    async with server.client() as client:
        answer = await client.put(f"/api/conversations/{cid}/active", json={"messageId": message_id})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def texts(body: dict[str, Any]) -> list[str]:
    return [message["message"] for message in body["messages"]]


def asked(fake: FakeProvider) -> list[str]:
    """The turns the model read for the latest reply, system prompt left out."""
    return [str(message["content"]) for message in fake.requests()[-1]["messages"] if message["role"] != "system"]


async def test_edits_and_regenerates_keep_every_branch_and_the_model_reads_only_the_one_it_answers(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    fake_provider.script(tokens=["one"])
    first = await send(server, "q1")
    cid = first["conversationId"]
    u1, a1 = first["userMessageId"], first["assistantMessageId"]
    fake_provider.script(tokens=["two"])
    second = await send(server, "q2", cid)
    u2, a2 = second["userMessageId"], second["assistantMessageId"]
    assert asked(fake_provider) == ["q1", "one", "q2"]

    fake_provider.script(tokens=["two again"])
    a2b = (await regenerate(server, cid, a2))["assistantMessageId"]
    assert asked(fake_provider) == ["q1", "one", "q2"], "a regenerate answers the same turn on the same branch"
    fake_provider.script(tokens=["edited one"])
    edited = await edit(server, cid, u1, "q1 edited")
    u1b, a1b = edited["userMessageId"], edited["assistantMessageId"]
    assert asked(fake_provider) == ["q1 edited"], "an edit of the first message starts a branch of its own"
    fake_provider.script(tokens=["three"])
    third = await send(server, "q3", cid)
    assert asked(fake_provider) == ["q1 edited", "edited one", "q3"], "a message follows the active branch"
    u3, a3 = third["userMessageId"], third["assistantMessageId"]

    body = await conversation(server, cid)
    assert body["activeMessageId"] == a3
    assert [message["id"] for message in body["messages"]] == [u1b, a1b, u3, a3]
    by_id = {message["id"]: message for message in body["messages"]}
    assert by_id[u1b]["parentId"] is None and by_id[u1b]["siblings"] == [u1, u1b] and by_id[u1b]["siblingIndex"] == 1
    assert by_id[a1b]["parentId"] == u1b and by_id[a3]["parentId"] == u3 and by_id[u3]["parentId"] == a1b

    everything = await conversation(server, cid, everything=True)
    assert [message["id"] for message in everything["messages"]] == [u1, a1, u2, a2, a2b, u1b, a1b, u3, a3]
    tree = {message["id"]: message for message in everything["messages"]}
    assert tree[a2b]["parentId"] == u2 and tree[a2b]["siblings"] == [a2, a2b] and tree[a2]["message"] == "two"
    assert tree[u2]["parentId"] == a1

    # Back to the first branch: its leaf is the reply last active there (the regenerated one).
    switched = await switch(server, cid, u1)
    assert switched == {"activeMessageId": a2b, "path": [u1, a1, u2, a2b]}
    assert texts(await conversation(server, cid)) == ["q1", "one", "q2", "two again"]
    assert (await switch(server, cid, a2))["path"] == [u1, a1, u2, a2]
    assert (await switch(server, cid, u1b))["activeMessageId"] == a3, "each branch point remembers its choice"
    assert (await switch(server, cid, u1))["activeMessageId"] == a2

    fake_provider.script(tokens=["four"])
    await send(server, "q4", cid)
    assert asked(fake_provider) == ["q1", "one", "q2", "two", "q4"]


async def test_a_conversation_kept_before_the_tree_reads_as_one_branch_and_grows_from_its_last_message(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    """Items with no parentId, as earlier versions wrote them (one regenerated reply after the other)."""
    server = await in_process()
    stream: Stream[ConversationMessage] = server.runtime.context("test", (), "legacy").streams.conversation
    cid = "kept-before-the-tree"
    at = "2026-11-01T10:00:00.000Z"
    for item_id, sender, text in (("u1", "user", "old question"), ("a1", "assistant", "old answer"),
                                  ("a1b", "assistant", "another old answer")):
        await stream.set(cid, item_id, {"message": text, "from": sender, "status": "completed", "timestamp": at})
    body = await conversation(server, cid)
    assert [(message["id"], message["parentId"]) for message in body["messages"]] == [
        ("u1", None), ("a1", "u1"), ("a1b", "a1")]
    assert body["activeMessageId"] == "a1b"
    fake_provider.script(tokens=["new"])
    sent = await send(server, "new question", cid)
    assert asked(fake_provider) == ["old question", "old answer", "another old answer", "new question"]
    after = await conversation(server, cid)
    assert [message["id"] for message in after["messages"]] == ["u1", "a1", "a1b", sent["userMessageId"],
                                                                 sent["assistantMessageId"]]
    assert after["messages"][3]["parentId"] == "a1b"


async def test_edit_and_switch_refuse_bad_input_by_name_and_another_keys_conversation(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_API_KEYS=f"{KEY},{OTHER_KEY}")
    mine, theirs = {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"Bearer {OTHER_KEY}"}
    async with server.client(headers=mine) as client:
        sent = (await client.post("/chat", json={"message": "hello"})).json()
    cid, user_id, reply_id = sent["conversationId"], sent["userMessageId"], sent["assistantMessageId"]
    await wait_for_status(server, cid, reply_id, headers=mine)
    base = f"/api/conversations/{cid}"
    async with server.client(headers=mine) as client:
        blank = await client.post(f"{base}/messages/{user_id}/edit", json={"message": "  "})
        assert blank.status_code == 422 and "message" in blank.json()["detail"], blank.text
        of_reply = await client.post(f"{base}/messages/{reply_id}/edit", json={"message": "x"})
        assert of_reply.status_code == 409 and reply_id in of_reply.json()["detail"], of_reply.text
        unknown = await client.post(f"{base}/messages/nope/edit", json={"message": "x"})
        assert unknown.status_code == 404 and "'nope'" in unknown.json()["detail"], unknown.text
        bad_model = await client.post(f"{base}/messages/{user_id}/edit", json={"message": "x", "model": "gpt-9"})
        assert bad_model.status_code == 422 and "gpt-9" in bad_model.json()["detail"], bad_model.text
        missing = await client.put(f"{base}/active", json={})
        assert missing.status_code == 422 and "messageId" in missing.json()["detail"], missing.text
        nowhere = await client.put(f"{base}/active", json={"messageId": "nope"})
        assert nowhere.status_code == 404 and "'nope'" in nowhere.json()["detail"], nowhere.text
    async with server.client(headers=theirs) as client:
        for answer in (await client.post(f"{base}/messages/{user_id}/edit", json={"message": "x"}),
                       await client.put(f"{base}/active", json={"messageId": user_id}),
                       await client.post(f"{base}/messages/{reply_id}/regenerate"),
                       await client.patch(base, json={"temperature": 1})):
            assert answer.status_code == 404, answer.text
    body = await conversation_as(server, cid, mine)
    assert [message["id"] for message in body["messages"]] == [user_id, reply_id], "nothing was stored"


async def conversation_as(server: InProcessServer, cid: str, headers: dict[str, str]) -> dict[str, Any]:
    async with server.client(headers=headers) as client:
        answer = await client.get(f"/api/conversations/{cid}", params={"all": "true"})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_a_tree_and_its_active_leaf_round_trip_through_export_and_import(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    first = await send(server, "q1")
    cid = first["conversationId"]
    await send(server, "q2", cid)
    edited = await edit(server, cid, first["userMessageId"], "q1 again")
    await regenerate(server, cid, edited["assistantMessageId"])
    await switch(server, cid, first["userMessageId"])
    before = await conversation(server, cid, everything=True)
    async with server.client() as client:
        exported = (await client.get(f"/api/conversations/{cid}/export")).json()
        assert exported["activeMessageId"] == before["activeMessageId"]
        exported.pop("conversationId")
        imported = await client.post("/api/conversations/import", json=exported)
    assert imported.status_code == 201, imported.text
    after = await conversation(server, imported.json()["conversationId"], everything=True)
    assert after["activeMessageId"] == before["activeMessageId"]
    keep = ("id", "parentId", "siblings", "siblingIndex", "message", "from")
    assert [{key: message[key] for key in keep} for message in after["messages"]] == \
        [{key: message[key] for key in keep} for message in before["messages"]]


async def test_an_import_whose_parents_do_not_close_is_refused_naming_the_message(
    in_process: InProcessStarter,
) -> None:
    server = await in_process()
    at = "2026-11-01T10:00:00.000Z"
    exported = {"title": "broken", "messages": [
        {"id": "u1", "message": "q", "from": "user", "status": "completed", "timestamp": at, "parentId": None},
        {"id": "a1", "message": "a", "from": "assistant", "status": "completed", "timestamp": at,
         "parentId": "later"}]}
    async with server.client() as client:
        answer = await client.post("/api/conversations/import", json=exported)
        assert answer.status_code == 422 and "'a1'" in answer.json()["detail"], answer.text
        answer = await client.post("/api/conversations/import", json={**exported, "messages": exported["messages"][:1],
                                                                       "activeMessageId": "zz"})
        assert answer.status_code == 422 and "activeMessageId" in answer.json()["detail"], answer.text


async def test_an_edit_or_regenerate_while_a_reply_streams_follows_the_busy_mode(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_BUSY_MODE="reject")
    first = await send(server, "q1")
    cid = first["conversationId"]
    fake_provider.script(tokens=["held ", "here"], hold_after=1)
    async with server.client() as client:
        streaming = (await client.post("/chat", json={"message": "q2", "conversationId": cid})).json()
        await fake_provider.until_held(1)
        for path, body in ((f"messages/{first['userMessageId']}/edit", {"message": "q1 again"}),
                           (f"messages/{first['assistantMessageId']}/regenerate", None)):
            refused = await client.post(f"/api/conversations/{cid}/{path}", json=body)
            assert refused.status_code == 409 and refused.json()["error"] == "conversation_busy", refused.text
    fake_provider.release()
    await wait_for_status(server, cid, streaming["assistantMessageId"])
    assert len((await conversation(server, cid, everything=True))["messages"]) == 4, "nothing of the refused kept"


async def test_a_deleted_tree_leaves_no_record_and_search_finds_every_branch(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    first = await send(server, "about otters")
    cid = first["conversationId"]
    await edit(server, cid, first["userMessageId"], "about beavers")
    await switch(server, cid, first["userMessageId"])
    async with server.client() as client:
        patched = await client.patch(f"/api/conversations/{cid}", json={"temperature": 0.5})
        assert patched.status_code == 200, patched.text
        for word in ("otters", "beavers"):
            hits = (await client.get("/api/conversations", params={"q": word})).json()["conversations"]
            assert [hit["conversationId"] for hit in hits] == [cid], word
        assert (await client.delete(f"/api/conversations/{cid}")).status_code == 204
    kept = await server.runtime.store.state_list(f"conversation:{cid}")
    assert not {"branch", "settings"} & set(kept), f"the branch or the settings outlived the conversation: {kept}"
    assert "generation" in kept, "the deletion marks stay (a slow writer must see the delete)"
