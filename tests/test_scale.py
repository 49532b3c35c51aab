"""Several real server processes sharing the real Redis (bus, relay, stops) and PostgreSQL (store).

Each test gets its own Redis key prefix and a fresh PostgreSQL database, so tests never see
each other's events or conversations.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import httpx
import pytest

from conftest import Cluster, FakeProvider, PrivatePostgres, PrivateRedis, Server, ServerFactory
from helpers import Transcript, Watcher, post_chat, read_sse, until, wait_for_status, wait_until_streaming
from test_motia_client import NodeWatcher, node, rebuilt_from_deltas  # noqa: F401  (node is a fixture)

TOKENS = [f"tok{i} " for i in range(40)]


async def follow_sse(server: Server, cid: str, transcript: Transcript, item_id: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
            "GET", f"{server.url}/api/conversations/{cid}/events") as response:
        async for frame in read_sse(response):
            if isinstance(frame, str):
                continue
            transcript.apply(frame)
            if transcript.status.get(item_id) in ("completed", "error", "stopped"):
                return


async def test_a_reply_posted_on_one_instance_streams_whole_to_clients_of_the_others(
    cluster: Cluster, fake_provider: FakeProvider, node: str,  # noqa: F811
) -> None:
    fake_provider.script(tokens=TOKENS, delay=0.01)
    a, b, c = cluster.start_many(3)
    cid = str(uuid.uuid4())
    node_watcher = await NodeWatcher.start(node, b.ws_url, cid, "group")
    deltas = Watcher(c.ws_url, cid, deltas=True)
    await deltas.__aenter__()
    transcript = Transcript()
    accepted = await post_chat(a.url, "hello cluster", cid)
    mid = accepted["assistantMessageId"]
    sse = asyncio.create_task(follow_sse(b, cid, transcript, mid))
    final = await deltas.until_finished(mid)
    await asyncio.wait_for(sse, 30)
    node_state = {item["id"]: item for item in (await node_watcher.final())["state"]}
    await deltas.__aexit__()

    expected = "".join(TOKENS)
    assert final["status"] == "completed" and final["message"] == expected
    assert rebuilt_from_deltas(deltas, mid) == expected
    assert transcript.texts[mid] == expected and transcript.status[mid] == "completed"
    assert node_state[mid]["message"] == expected and node_state[mid]["status"] == "completed"
    assert node_state[accepted["userMessageId"]]["message"] == "hello cluster"
    seqs = [frame["event"]["data"]["seq"] for frame in deltas.watch.frames if frame["event"]["type"] != "sync"
            and isinstance(frame["event"].get("data"), dict) and "seq" in frame["event"]["data"]]
    assert seqs == sorted(set(seqs)), "a subscriber must see one strictly rising order of changes"
    for server in (a, b, c):
        async with httpx.AsyncClient(base_url=server.url) as client:
            body = (await client.get(f"/api/conversations/{cid}")).json()
        assert [m["message"] for m in body["messages"]] == ["hello cluster", expected]


# -- helpers -------------------------------------------------------------------------------------

async def post_traced(server: Server, message: str, cid: str) -> tuple[dict[str, str], str]:
    """POST /chat with a trace id of our own, to find which instance runs the reply."""
    trace = uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post("/chat", json={"message": message, "conversationId": cid},
                                     headers={"x-trace-id": trace})
    assert response.status_code == 200, response.text
    return response.json(), trace


@dataclass
class PostedReply:
    """A message posted to the first of two instances, and which of them generates its reply."""

    mid: str
    trace: str
    generator: Server
    other: Server


async def post_to_pair(servers: list[Server], message: str, cid: str) -> PostedReply:
    accepted, trace = await post_traced(servers[0], message, cid)
    generator = await generating_instance(servers, trace)
    other = servers[1] if generator is servers[0] else servers[0]
    return PostedReply(accepted["assistantMessageId"], trace, generator, other)


async def generating_instance(servers: list[Server], trace: str, timeout: float = 15) -> Server:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        started = f'"msg":"handler started","step":"AiResponse","trace_id":"{trace}"'
        running = [server for server in servers if started in server.logs()]
        if running:
            return running[-1]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no instance started the reply of trace {trace}")


def texts_seen(watcher: Watcher, item_id: str) -> list[str]:
    """Every text of one item a client showed, in order, whether it reads whole items or deltas."""
    seen: list[str] = []
    text: str | None = None
    for frame in watcher.watch.frames:
        event = frame["event"]
        if event["type"] == "event" and event["event"]["type"] == "delta":
            if event["event"]["data"]["id"] == item_id and text is not None:
                text += event["event"]["data"]["delta"]
                seen.append(text)
            continue
        data = event.get("data")
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and item.get("id") == item_id:
                text = item["message"]
                seen.append(text)
    return seen


def assert_never_mixed(watcher: Watcher, item_id: str, expected: str) -> None:
    """A client may see a reply restart, but never text that is not a prefix of the one reply."""
    for text in texts_seen(watcher, item_id):
        assert expected.startswith(text), f"a client showed text that is not part of the reply: {text!r}"


async def conversation(server: Server, cid: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.get(f"/api/conversations/{cid}")
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


def provider_streams(fake: FakeProvider) -> list[dict[str, object]]:
    return list(httpx.get(f"{fake.url}/control/requests").json()["streams"])


# -- an instance dies, stops, or leaves ------------------------------------------------------------

async def test_killing_the_generating_instance_lets_another_finish_the_one_reply(
    cluster: Cluster, fake_provider: FakeProvider,
) -> None:
    tokens = [f"word{i} " for i in range(60)]
    fake_provider.script(tokens=tokens, hold_after=3)  # held mid-way: the kill provably cuts it off
    servers = cluster.start_many(2)
    cid, expected = str(uuid.uuid4()), "".join(tokens)
    watchers = {}
    async with Watcher(servers[0].ws_url, cid) as plain_a, Watcher(servers[1].ws_url, cid) as plain_b, \
            Watcher(servers[0].ws_url, cid, deltas=True) as deltas_a, \
            Watcher(servers[1].ws_url, cid, deltas=True) as deltas_b:
        watchers = {servers[0].port: (plain_a, deltas_a), servers[1].port: (plain_b, deltas_b)}
        posted = await post_to_pair(servers, "survive a crash", cid)
        mid, generator, survivor = posted.mid, posted.generator, posted.other
        await fake_provider.until_held()
        await wait_until_streaming(survivor.url, cid, mid)
        generator.process.kill()
        generator.process.wait()
        fake_provider.release()  # the survivor's run goes to the end
        plain, deltas = watchers[survivor.port]
        finals = await asyncio.gather(plain.until_finished(mid, 60), deltas.until_finished(mid, 60))

    assert [(f["status"], f["message"]) for f in finals] == [("completed", expected)] * 2
    assert rebuilt_from_deltas(deltas, mid) == expected
    assert_never_mixed(plain, mid, expected)
    assert_never_mixed(deltas, mid, expected)
    messages = await conversation(survivor, cid)
    assert [(m["from"], m["status"], m["message"]) for m in messages] == [
        ("user", "completed", "survive a crash"), ("assistant", "completed", expected)]
    assert len(provider_streams(fake_provider)) == 2, "the reply runs once more on the survivor, not more"
    assert "claimed an unacknowledged event" in survivor.logs()


async def test_a_stop_sent_to_another_instance_stops_the_reply(
    cluster: Cluster, fake_provider: FakeProvider,
) -> None:
    tokens = [f"long{i} " for i in range(400)]
    fake_provider.script(tokens=tokens, hold_after=3)  # never released: only the stop ends it
    servers = cluster.start_many(2)
    cid = str(uuid.uuid4())
    posted = await post_to_pair(servers, "stop me from elsewhere", cid)
    mid, other = posted.mid, posted.other
    await fake_provider.until_held()
    await wait_until_streaming(other.url, cid, mid)
    async with httpx.AsyncClient(base_url=other.url, timeout=30) as client:
        response = await client.post(f"/api/conversations/{cid}/messages/{mid}/stop")
    assert response.status_code == 202, response.text
    final = await wait_for_status(other.url, cid, mid)
    assert final["status"] == "stopped"
    assert "".join(tokens).startswith(final["message"]) and len(final["message"]) < len("".join(tokens))
    await fake_provider.until_closed_by_client(0)  # the provider stream on the generating instance closed
    assert len(provider_streams(fake_provider)) == 1
    assert response.json()["status"] == "stopped"


@pytest.mark.parametrize("shutdown_seconds", ["1", "30"])
async def test_sigterm_finishes_or_hands_back_the_running_reply(
    cluster: Cluster, fake_provider: FakeProvider, shutdown_seconds: str,
) -> None:
    # The reply is held mid-way when the stop comes. With a one-second budget it stays held, so it
    # cannot finish: it is handed back. With thirty, it is released once the instance is leaving.
    tokens = [f"grace{i} " for i in range(150)]
    fake_provider.script(tokens=tokens, hold_after=3)
    servers = cluster.start_many(2, STREAMCHAT_SHUTDOWN_SECONDS=shutdown_seconds)
    cid, expected = str(uuid.uuid4()), "".join(tokens)
    posted = await post_to_pair(servers, "leave gracefully", cid)
    mid, generator, survivor = posted.mid, posted.generator, posted.other
    async with Watcher(survivor.ws_url, cid, deltas=True) as watcher:
        await fake_provider.until_held()
        await wait_until_streaming(survivor.url, cid, mid)
        asked_at = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(generator.stop))
        if shutdown_seconds == "30":
            await until(lambda: not_listening(generator), "the leaving instance no longer taking connections")
            fake_provider.release()
        assert await stopping == 0, "a graceful stop exits with status 0"
        stop_took = time.monotonic() - asked_at
        fake_provider.release()  # (one second) the survivor's run of the handed-back reply goes to the end
        assert "stopped cleanly" in generator.logs()
        final = await watcher.until_finished(mid, 60)
    assert (final["status"], final["message"]) == ("completed", expected)
    assert_never_mixed(watcher, mid, expected)
    messages = await conversation(survivor, cid)
    assert [m["status"] for m in messages] == ["completed", "completed"]
    if shutdown_seconds == "1":
        assert "handing unfinished events back" in generator.logs()
        leaving = "\n".join(generator.logs().splitlines()[-30:])
        assert len(provider_streams(fake_provider)) == 2, (
            f"handed back, then run once on the survivor; the stop took {stop_took:.1f} s; its log ends:\n{leaving}")
    else:
        assert len(provider_streams(fake_provider)) == 1, "finished by the instance that was leaving"


async def not_listening(server: Server) -> bool:
    """Whether the server refuses connections: a leaving uvicorn closes its socket first."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    except OSError:
        return True
    writer.close()
    return False


async def provider_sent(fake: FakeProvider, number: int, tokens: int) -> bool:
    streams = await asyncio.to_thread(fake.streams)
    return len(streams) > number and streams[number]["sent"] >= tokens


# -- Redis or PostgreSQL restarts ---------------------------------------------------------------------

async def test_redis_restarting_mid_reply_loses_no_message(
    servers: ServerFactory, postgres_url: str, private_redis: PrivateRedis, fake_provider: FakeProvider,
) -> None:
    """This Redis keeps nothing on disk: a restart loses every key, and the service must not care."""
    tokens = [f"red{i} " for i in range(80)]
    fake_provider.script(tokens=tokens, hold_after=5)  # held mid-way, then released while Redis is down
    deployment = Cluster(servers, private_redis.url, postgres_url, "restart")
    a, b = deployment.start_many(2, STREAMCHAT_BACKEND_RETRY_SECONDS="30")
    cid, expected = str(uuid.uuid4()), "".join(tokens)
    async with Watcher(b.ws_url, cid, deltas=True) as deltas, Watcher(a.ws_url, cid) as plain:
        first = await post_chat(a.url, "before the restart", cid)
        mid = first["assistantMessageId"]
        await fake_provider.until_held()
        await wait_until_streaming(b.url, cid, mid)
        private_redis.kill()
        async with httpx.AsyncClient(base_url=b.url, timeout=30) as client:
            down = await client.get("/readyz")
            assert down.status_code == 503 and down.json()["checks"]["redis"].startswith("unavailable"), down.text
            assert (await client.get("/healthz")).status_code == 200, "alive, only not ready"
            fake_provider.release()  # the rest of the reply comes while Redis is down
            await until(lambda: provider_sent(fake_provider, 0, len(tokens)), "the reply sent while Redis is down")
            private_redis.start()
            assert (await client.get("/readyz")).json() == {"status": "ready",
                                                             "checks": {"store": "ok", "redis": "ok",
                                                                        "model": "ok"}}
        finals = await asyncio.gather(deltas.until_finished(mid, 60), plain.until_finished(mid, 60))
    for final in finals:
        assert (final["status"], final["message"]) == ("completed", expected)
    assert_never_mixed(deltas, mid, expected)
    assert_never_mixed(plain, mid, expected)

    second = await post_chat(b.url, "after the restart", cid)
    done = await wait_for_status(a.url, cid, second["assistantMessageId"], timeout=60)
    assert (done["status"], done["message"]) == ("completed", expected)
    for server in (a, b):
        messages = await conversation(server, cid)
        assert [(m["from"], m["status"]) for m in messages] == [
            ("user", "completed"), ("assistant", "completed")] * 2
        assert [m["message"] for m in messages if m["from"] == "user"] == ["before the restart", "after the restart"]


async def test_dropped_redis_connections_mid_reply_are_filled_from_the_log(
    servers: ServerFactory, postgres_url: str, private_redis: PrivateRedis, fake_provider: FakeProvider,
) -> None:
    """Redis keeps its data, but every instance's subscription is cut, three times: the missed
    changes come from the group's log, in order, without a snapshot being re-sent."""
    tokens = [f"cut{i} " for i in range(80)]
    # Paced, so that changes come while a subscription is cut; held before its end until the three
    # cuts are over, so the reply is running across all of them.
    fake_provider.script(tokens=tokens, delay=0.04, hold_after=60)
    deployment = Cluster(servers, private_redis.url, postgres_url, "drops")
    a, b = deployment.start_many(2)
    cid, expected = str(uuid.uuid4()), "".join(tokens)
    async with Watcher(b.ws_url, cid, deltas=True) as deltas, Watcher(a.ws_url, cid, deltas=True) as other:
        first = await post_chat(a.url, "cut the wires", cid)
        mid = first["assistantMessageId"]
        await wait_until_streaming(b.url, cid, mid)
        for cut in range(1, 4):
            await asyncio.to_thread(private_redis.cli, "CLIENT", "KILL", "TYPE", "pubsub")

            async def resubscribed(cut: int = cut) -> bool:
                return all(server.logs().count("relay reconnected") >= cut for server in (a, b))

            await until(resubscribed, f"both instances back on the relay after cut {cut}")
        fake_provider.release()
        finals = await asyncio.gather(deltas.until_finished(mid, 60), other.until_finished(mid, 60))
    for final in finals:
        assert (final["status"], final["message"]) == ("completed", expected)
    for watcher in (deltas, other):
        assert_never_mixed(watcher, mid, expected)
        assert rebuilt_from_deltas(watcher, mid) == expected
        syncs = [f for f in watcher.watch.frames if f["event"]["type"] == "sync"]
        assert len(syncs) == 1, "gaps are filled from the log, not by re-sending a snapshot"
    logs = a.logs() + b.logs()
    assert "relay reconnected" in logs and "cannot be filled" not in logs


async def test_postgres_restarting_mid_reply_loses_no_message(
    servers: ServerFactory, redis_url: str, private_postgres: PrivatePostgres, fake_provider: FakeProvider,
) -> None:
    tokens = [f"pg{i} " for i in range(80)]
    fake_provider.script(tokens=tokens, hold_after=5)  # held mid-way, then released while PostgreSQL is down
    deployment = Cluster(servers, redis_url, private_postgres.url, f"streamchat-test-{uuid.uuid4().hex[:10]}")
    a, b = deployment.start_many(2)
    cid, expected = str(uuid.uuid4()), "".join(tokens)
    async with Watcher(b.ws_url, cid, deltas=True) as deltas:
        first = await post_chat(a.url, "before the restart", cid)
        mid = first["assistantMessageId"]
        await fake_provider.until_held()
        await wait_until_streaming(b.url, cid, mid)
        private_postgres.stop()
        during = asyncio.create_task(post_chat(b.url, "while the database restarts", cid))
        fake_provider.release()  # the rest of the reply comes while PostgreSQL is down
        await until(lambda: provider_sent(fake_provider, 0, len(tokens)), "the reply sent while PostgreSQL is down")
        private_postgres.start()
        final = await deltas.until_finished(mid, 60)
        second = await asyncio.wait_for(during, 60)
    assert (final["status"], final["message"]) == ("completed", expected)
    assert_never_mixed(deltas, mid, expected)
    done = await wait_for_status(a.url, cid, second["assistantMessageId"], timeout=60)
    assert (done["status"], done["message"]) == ("completed", expected)

    # Everything reached PostgreSQL: a new instance started after the others stopped reads it all.
    for server in (a, b):
        server.stop()
    fresh = deployment.start()
    messages = await conversation(fresh, cid)
    assert [(m["from"], m["status"], m["message"]) for m in messages] == [
        ("user", "completed", "before the restart"), ("assistant", "completed", expected),
        ("user", "completed", "while the database restarts"), ("assistant", "completed", expected)]


def test_an_instance_whose_redis_is_unreachable_refuses_to_start_and_says_why(
    servers: ServerFactory, postgres_url: str,
) -> None:
    from conftest import free_port

    port = free_port()
    with pytest.raises(RuntimeError, match="exited") as failure:
        servers.start(STREAMCHAT_BUS_URL=f"redis://:s3cret@127.0.0.1:{port}/0", STREAMCHAT_STATE_URL=postgres_url,
                      STREAMCHAT_BACKEND_RETRY_SECONDS="1")
    assert f"Redis at redis://127.0.0.1:{port}/0 did not answer" in str(failure.value)
    assert "s3cret" not in str(failure.value), "the password must not be printed"


async def test_a_message_posted_while_redis_stays_down_is_503_and_keeps_nothing(
    servers: ServerFactory, postgres_url: str, private_redis: PrivateRedis, fake_provider: FakeProvider,
) -> None:
    deployment = Cluster(servers, private_redis.url, postgres_url, "down")
    server = deployment.start(STREAMCHAT_BACKEND_RETRY_SECONDS="1")
    cid = str(uuid.uuid4())
    private_redis.kill()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        refused = await client.post("/chat", json={"message": "into the void", "conversationId": cid})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "unavailable" and "Redis" in refused.json()["detail"], refused.text
        assert "Retry-After" in refused.headers
        private_redis.start()

        async def ready_again() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await until(ready_again, "the instance ready again once Redis is back")
        assert (await client.get(f"/api/conversations/{cid}")).status_code == 404, "nothing of it was kept"
        accepted = await client.post("/chat", json={"message": "back again", "conversationId": cid})
        assert accepted.status_code == 200, accepted.text
    done = await wait_for_status(server.url, cid, accepted.json()["assistantMessageId"])
    assert done["status"] == "completed"
    assert [m["message"] for m in await conversation(server, cid)][:1] == ["back again"]
