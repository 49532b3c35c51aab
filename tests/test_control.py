"""Control of a running reply: stop, regenerate, and a second message while one streams."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from conftest import FakeProvider, InProcessStarter, Server
from helpers import Watcher, post_chat, until, wait_for_status, wait_until_streaming

SLOW = [f"slow{i} " for i in range(100)]


def stop_url(server: Server, cid: str, mid: str, action: str = "stop") -> str:
    return f"{server.url}/api/conversations/{cid}/messages/{mid}/{action}"


def provider_streams(fake: FakeProvider) -> list[dict[str, Any]]:
    return list(httpx.get(f"{fake.url}/control/requests").json()["streams"])


async def until_text(target: str, cid: str, mid: str, text: str) -> None:
    """Wait until the reply shows exactly this text (all it was sent before a hold)."""
    async def shown() -> bool:
        return any(m["id"] == mid and m["message"] == text for m in await conversation(target, cid))

    await until(shown, f"{mid} showing {text!r}")


async def conversation(target: str, cid: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=target, timeout=30) as client:
        response = await client.get(f"/api/conversations/{cid}")
    return list(response.json()["messages"]) if response.status_code == 200 else []


async def until_logged(server: Server, message: str, about: str) -> None:
    """Wait until the server logged `message` about this id (the shared server logs every test's work)."""
    async def logged() -> bool:
        return any(message in line and about in line for line in server.logs().splitlines())

    await until(logged, f"{message!r} logged about {about}")


async def test_stop_closes_the_provider_stream_and_keeps_the_partial_text(
    server: Server, fake_provider: FakeProvider
) -> None:
    fake_provider.script(tokens=SLOW, hold_after=3)  # the reply is held mid-way until it is stopped
    accepted = await post_chat(server.url, "talk slowly")
    cid, mid = accepted["conversationId"], accepted["assistantMessageId"]
    await fake_provider.until_held()
    await until_text(server.url, cid, mid, "".join(SLOW[:3]))
    asked = time.time()
    response = httpx.post(stop_url(server, cid, mid))
    assert response.status_code == 202, response.text
    assert response.json()["id"] == mid
    final = await wait_for_status(server.url, cid, mid)
    assert (final["status"], final["message"]) == ("stopped", "".join(SLOW[:3])), "the partial text is kept"
    record = await fake_provider.until_closed_by_client(0)
    assert not record["finished"] and record["sent"] == 3, record
    print(f"provider stream closed {1000 * (record['closed_by_client_at'] - asked):.1f} ms after the stop request")
    assert httpx.post(stop_url(server, cid, mid)).status_code == 409, "a stopped reply cannot be stopped again"


async def test_stop_reaches_a_provider_that_has_not_sent_anything(
    server: Server, fake_provider: FakeProvider
) -> None:
    fake_provider.script(hold=True)
    accepted = await post_chat(server.url, "silent provider")
    cid, mid = accepted["conversationId"], accepted["assistantMessageId"]

    async def requested() -> bool:
        return bool(await asyncio.to_thread(provider_streams, fake_provider))

    await until(requested, "the reply's request reached the provider")
    assert httpx.post(stop_url(server, cid, mid)).status_code == 202
    final = await wait_for_status(server.url, cid, mid)
    assert (final["status"], final["message"]) == ("stopped", "")
    record = await fake_provider.until_closed_by_client(0)
    assert record["sent"] == 0 and not record["finished"]


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
    fake_provider.script(tokens=[f"a{i} " for i in range(20)], hold_after=2)
    cid = str(uuid.uuid4())
    async with Watcher(server.ws_url, cid) as watcher:
        first = await post_chat(server.url, "first question", cid)
        await fake_provider.until_held()
        second = await post_chat(server.url, "second question", cid)  # while the first one streams
        fake_provider.release()
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
    fake_provider.script(tokens=SLOW[:30], hold_after=2)  # the first reply runs until the second is stopped
    first = await post_chat(server.url, "long answer")
    cid = first["conversationId"]
    await fake_provider.until_held()
    second = await post_chat(server.url, "never mind this one", cid)
    response = httpx.post(stop_url(server, cid, second["assistantMessageId"]))
    assert response.status_code == 202
    assert response.json()["status"] == "stopped"
    fake_provider.release()
    assert (await wait_for_status(server.url, cid, first["assistantMessageId"]))["status"] == "completed"
    # Its turn comes once the first one has finished: the queued event is handled, and ends at once.
    await until_logged(server, "reply already finished; skipping", second["assistantMessageId"])
    stopped = await wait_for_status(server.url, cid, second["assistantMessageId"])
    assert (stopped["status"], stopped["message"]) == ("stopped", "")
    assert len(fake_provider.requests()) == 1, "the stopped queued reply must never reach the provider"


async def test_reject_mode_refuses_a_message_while_one_streams(
    in_process: InProcessStarter, fake_provider: FakeProvider
) -> None:
    server = await in_process(STREAMCHAT_BUSY_MODE="reject")
    fake_provider.script(tokens=SLOW[:20], hold_after=2)  # the first reply streams until the test says so
    first = await post_chat(server, "busy now", None)
    cid = first["conversationId"]
    await fake_provider.until_held()
    async with server.client() as client:
        refused = await client.post("/chat", json={"message": "me too", "conversationId": cid})
        assert refused.status_code == 409
        assert refused.json()["error"] == "conversation_busy"
        assert first["assistantMessageId"] in refused.json()["detail"]
        fake_provider.release()
        await wait_for_status(server, cid, first["assistantMessageId"])
        messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
        users = [m["message"] for m in messages if m["from"] == "user"]
        assert users == ["busy now"], "nothing of the refused one kept"
        assert (await client.post("/chat", json={"message": "now?", "conversationId": cid})).status_code == 200


async def test_reject_mode_lets_one_of_two_simultaneous_messages_through(
    in_process: InProcessStarter, fake_provider: FakeProvider
) -> None:
    server = await in_process(STREAMCHAT_BUSY_MODE="reject")
    async with server.client() as client:
        for round in range(5):
            # The accepted reply is held open until both answers are in: it cannot end between them.
            fake_provider.script(tokens=SLOW[:5], hold_after=1)
            cid = f"same-instant-{round}-{uuid.uuid4()}"
            answers = await asyncio.gather(*(client.post("/chat", json={"message": text, "conversationId": cid})
                                             for text in ("one", "two")))
            fake_provider.release()
            assert sorted(answer.status_code for answer in answers) == [200, 409], [a.text for a in answers]
            [accepted] = [answer.json() for answer in answers if answer.status_code == 200]
            await wait_for_status(server, cid, accepted["assistantMessageId"])
            messages = (await client.get(f"/api/conversations/{cid}", params={"all": "true"})).json()["messages"]
            assert len(messages) == 2, "nothing of the refused message is kept"
            again = await client.post("/chat", json={"message": "and now?", "conversationId": cid})
            assert again.status_code == 200, "the finished reply frees the conversation"
            await wait_for_status(server, cid, again.json()["assistantMessageId"])


async def test_reject_mode_lets_one_of_a_regenerate_and_a_message_at_the_same_instant_through(
    in_process: InProcessStarter, fake_provider: FakeProvider
) -> None:
    server = await in_process(STREAMCHAT_BUSY_MODE="reject")
    fake_provider.script(tokens=SLOW[:5])
    first = await post_chat(server, "a first answer", None)
    cid = first["conversationId"]
    await wait_for_status(server, cid, first["assistantMessageId"])
    async with server.client() as client:
        for _ in range(5):
            messages = (await client.get(f"/api/conversations/{cid}", params={"all": "true"})).json()["messages"]
            last_reply = [m["id"] for m in messages if m["from"] == "assistant"][-1]
            # The accepted reply is held open until both answers are in: it cannot end between them.
            fake_provider.script(hold_after=1)
            regenerate = client.post(f"/api/conversations/{cid}/messages/{last_reply}/regenerate")
            message = client.post("/chat", json={"message": "meanwhile", "conversationId": cid})
            answers = await asyncio.gather(regenerate, message)
            fake_provider.release()
            assert sorted(answer.status_code for answer in answers) in ([200, 409], [202, 409]), \
                [a.text for a in answers]
            [refused] = [answer for answer in answers if answer.status_code == 409]
            assert refused.json()["error"] == "conversation_busy"
            [accepted] = [answer.json() for answer in answers if answer.status_code != 409]
            await wait_for_status(server, cid, accepted["assistantMessageId"])
            after = (await client.get(f"/api/conversations/{cid}", params={"all": "true"})).json()["messages"]
            added = 2 if "message" in accepted else 1  # a message and its reply, or a new reply
            assert len(after) == len(messages) + added, "nothing of the refused one is kept"


async def test_interrupt_mode_stops_the_running_reply_and_answers_the_new_message(
    in_process: InProcessStarter, fake_provider: FakeProvider
) -> None:
    server = await in_process(STREAMCHAT_BUSY_MODE="interrupt")
    fake_provider.script(tokens=SLOW, hold_after=2)  # held mid-way, never released: only the interrupt ends it
    first = await post_chat(server, "go on and on")
    cid = first["conversationId"]
    await fake_provider.until_held()
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
