"""Control of a running reply: stop, regenerate, and a second message while one streams."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from conftest import FakeProvider, InProcessStarter, Server
from helpers import Watcher, post_chat, wait_for_status, wait_until_streaming

SLOW = [f"slow{i} " for i in range(100)]


def stop_url(server: Server, cid: str, mid: str, action: str = "stop") -> str:
    return f"{server.url}/api/conversations/{cid}/messages/{mid}/{action}"


def provider_streams(fake: FakeProvider) -> list[dict[str, Any]]:
    return list(httpx.get(f"{fake.url}/control/requests").json()["streams"])


async def test_stop_closes_the_provider_stream_and_keeps_the_partial_text(
    server: Server, fake_provider: FakeProvider
) -> None:
    fake_provider.script(tokens=SLOW, delay=0.05)
    accepted = await post_chat(server.url, "talk slowly")
    cid, mid = accepted["conversationId"], accepted["assistantMessageId"]
    await wait_until_streaming(server.url, cid, mid)
    asked = time.time()
    response = httpx.post(stop_url(server, cid, mid))
    assert response.status_code == 202, response.text
    assert response.json()["id"] == mid
    final = await wait_for_status(server.url, cid, mid)
    assert final["status"] == "stopped"
    assert final["message"] and "".join(SLOW).startswith(final["message"])
    assert len(final["message"]) < len("".join(SLOW))
    [record] = provider_streams(fake_provider)
    assert record["closed_by_client_at"] is not None and not record["finished"], record
    assert record["sent"] < len(SLOW)
    print(f"provider stream closed {1000 * (record['closed_by_client_at'] - asked):.1f} ms after the stop request")
    assert httpx.post(stop_url(server, cid, mid)).status_code == 409, "a stopped reply cannot be stopped again"


async def test_stop_reaches_a_provider_that_has_not_sent_anything(
    server: Server, fake_provider: FakeProvider
) -> None:
    fake_provider.script(hold=True)
    accepted = await post_chat(server.url, "silent provider")
    cid, mid = accepted["conversationId"], accepted["assistantMessageId"]
    for _ in range(200):
        if provider_streams(fake_provider):
            break
        await asyncio.sleep(0.02)
    assert httpx.post(stop_url(server, cid, mid)).status_code == 202
    final = await wait_for_status(server.url, cid, mid)
    assert (final["status"], final["message"]) == ("stopped", "")
    for _ in range(100):
        if provider_streams(fake_provider)[0]["closed_by_client_at"]:
            break
        await asyncio.sleep(0.02)
    assert provider_streams(fake_provider)[0]["closed_by_client_at"] is not None


async def test_stop_answers_404_for_unknown_and_409_for_finished_messages(server: Server) -> None:
    accepted = await post_chat(server.url, "quick one")
    cid = accepted["conversationId"]
    await wait_for_status(server.url, cid, accepted["assistantMessageId"])
    finished = httpx.post(stop_url(server, cid, accepted["assistantMessageId"]))
    assert finished.status_code == 409 and finished.json()["error"] == "conflict"
    assert httpx.post(stop_url(server, cid, accepted["userMessageId"])).status_code == 409
    unknown = httpx.post(stop_url(server, cid, "no-such-message"))
    assert unknown.status_code == 404 and "no-such-message" in unknown.json()["detail"]
    assert httpx.post(stop_url(server, "no-such-conversation", "x")).status_code == 404


async def test_a_second_message_waits_its_turn_and_sees_the_first_answer(
    server: Server, fake_provider: FakeProvider
) -> None:
    fake_provider.script(tokens=[f"a{i} " for i in range(20)], delay=0.02)
    cid = str(uuid.uuid4())
    async with Watcher(server.ws_url, cid) as watcher:
        first = await post_chat(server.url, "first question", cid)
        second = await post_chat(server.url, "second question", cid)
        await watcher.until_finished(second["assistantMessageId"], timeout=30)
    versions = [(f["id"], f["event"]["data"]["status"]) for f in watcher.watch.frames[1:]
                if f["event"]["type"] in ("create", "update")]
    first_done = versions.index((first["assistantMessageId"], "completed"))
    second_started = versions.index((second["assistantMessageId"], "streaming"))
    assert first_done < second_started, "the queued reply started before the first one finished"
    [_, later] = fake_provider.requests()
    assert [m["content"] for m in later["messages"][1:]] == [
        "first question", "".join(f"a{i} " for i in range(20)), "second question"]


async def test_a_queued_reply_that_is_stopped_never_starts(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tokens=SLOW[:30], delay=0.03)
    first = await post_chat(server.url, "long answer")
    cid = first["conversationId"]
    second = await post_chat(server.url, "never mind this one", cid)
    response = httpx.post(stop_url(server, cid, second["assistantMessageId"]))
    assert response.status_code == 202
    assert response.json()["status"] == "stopped"
    assert (await wait_for_status(server.url, cid, first["assistantMessageId"]))["status"] == "completed"
    await asyncio.sleep(0.2)
    stopped = await wait_for_status(server.url, cid, second["assistantMessageId"])
    assert (stopped["status"], stopped["message"]) == ("stopped", "")
    assert len(fake_provider.requests()) == 1, "the stopped queued reply must never reach the provider"


async def test_reject_mode_refuses_a_message_while_one_streams(
    in_process: InProcessStarter, fake_provider: FakeProvider
) -> None:
    server = await in_process(STREAMCHAT_BUSY_MODE="reject")
    fake_provider.script(tokens=SLOW[:20], delay=0.03)
    first = await post_chat(server, "busy now", None)
    cid = first["conversationId"]
    async with server.client() as client:
        refused = await client.post("/chat", json={"message": "me too", "conversationId": cid})
        assert refused.status_code == 409
        assert refused.json()["error"] == "conversation_busy"
        assert first["assistantMessageId"] in refused.json()["detail"]
        await wait_for_status(server, cid, first["assistantMessageId"])
        messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
        users = [m["message"] for m in messages if m["from"] == "user"]
        assert users == ["busy now"], "nothing of the refused one kept"
        assert (await client.post("/chat", json={"message": "now?", "conversationId": cid})).status_code == 200


async def test_reject_mode_lets_one_of_two_simultaneous_messages_through(
    in_process: InProcessStarter, fake_provider: FakeProvider
) -> None:
    server = await in_process(STREAMCHAT_BUSY_MODE="reject")
    fake_provider.script(tokens=SLOW[:5], delay=0.01)
    async with server.client() as client:
        for round in range(5):
            cid = f"same-instant-{round}-{uuid.uuid4()}"
            answers = await asyncio.gather(*(client.post("/chat", json={"message": text, "conversationId": cid})
                                             for text in ("one", "two")))
            assert sorted(answer.status_code for answer in answers) == [200, 409], [a.text for a in answers]
            [accepted] = [answer.json() for answer in answers if answer.status_code == 200]
            await wait_for_status(server, cid, accepted["assistantMessageId"])
            messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
            assert len(messages) == 2, "nothing of the refused message is kept"
            again = await client.post("/chat", json={"message": "and now?", "conversationId": cid})
            assert again.status_code == 200, "the finished reply frees the conversation"
            await wait_for_status(server, cid, again.json()["assistantMessageId"])


async def test_reject_mode_lets_one_of_a_regenerate_and_a_message_at_the_same_instant_through(
    in_process: InProcessStarter, fake_provider: FakeProvider
) -> None:
    server = await in_process(STREAMCHAT_BUSY_MODE="reject")
    fake_provider.script(tokens=SLOW[:5], delay=0.01)
    first = await post_chat(server, "a first answer", None)
    cid = first["conversationId"]
    await wait_for_status(server, cid, first["assistantMessageId"])
    async with server.client() as client:
        for _ in range(5):
            messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
            last_reply = [m["id"] for m in messages if m["from"] == "assistant"][-1]
            regenerate = client.post(f"/api/conversations/{cid}/messages/{last_reply}/regenerate")
            message = client.post("/chat", json={"message": "meanwhile", "conversationId": cid})
            answers = await asyncio.gather(regenerate, message)
            assert sorted(answer.status_code for answer in answers) in ([200, 409], [202, 409]), \
                [a.text for a in answers]
            [refused] = [answer for answer in answers if answer.status_code == 409]
            assert refused.json()["error"] == "conversation_busy"
            [accepted] = [answer.json() for answer in answers if answer.status_code != 409]
            await wait_for_status(server, cid, accepted["assistantMessageId"])
            after = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
            added = 2 if "message" in accepted else 1  # a message and its reply, or a new reply
            assert len(after) == len(messages) + added, "nothing of the refused one is kept"


async def test_interrupt_mode_stops_the_running_reply_and_answers_the_new_message(
    in_process: InProcessStarter, fake_provider: FakeProvider
) -> None:
    server = await in_process(STREAMCHAT_BUSY_MODE="interrupt")
    fake_provider.script(tokens=SLOW, delay=0.03)
    first = await post_chat(server, "go on and on")
    cid = first["conversationId"]
    await wait_until_streaming(server, cid, first["assistantMessageId"])
    second = await post_chat(server, "actually, stop [tokens=2]", cid)
    interrupted = await wait_for_status(server, cid, first["assistantMessageId"])
    assert interrupted["status"] == "stopped" and interrupted["message"]
    answered = await wait_for_status(server, cid, second["assistantMessageId"])
    assert (answered["status"], answered["message"]) == ("completed", " t0 t1")


async def test_regenerate_answers_the_same_turn_again(server: Server, fake_provider: FakeProvider) -> None:
    first = await post_chat(server.url, "tell me a fact")
    cid, old = first["conversationId"], first["assistantMessageId"]
    await wait_for_status(server.url, cid, old)
    follow = await post_chat(server.url, "and another", cid)
    await wait_for_status(server.url, cid, follow["assistantMessageId"])
    fake_provider.script(tokens=["A", " fresh", " fact"])
    response = httpx.post(stop_url(server, cid, old, "regenerate"))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["userMessageId"] == first["userMessageId"] and body["assistantMessageId"] != old
    final = await wait_for_status(server.url, cid, body["assistantMessageId"])
    assert (final["status"], final["message"]) == ("completed", "A fresh fact")
    sent = [m["content"] for m in fake_provider.requests()[-1]["messages"][1:]]
    assert sent == ["tell me a fact"], "the regenerated reply sees history only up to its own turn"
    assert httpx.post(stop_url(server, cid, first["userMessageId"], "regenerate")).status_code == 409
    assert httpx.post(stop_url(server, cid, "nope", "regenerate")).status_code == 404
