"""The PostgreSQL store and catalog on the real server: schema set-up by racing instances, clean failures, races."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from conftest import free_port
from helpers import until
from streamchat.catalog.postgres import PostgresCatalog
from streamchat.framework.errors import StoreUnavailable
from streamchat.framework.store import PostgresStore, StoredItem
from streamchat.framework.store.postgres import MIGRATIONS


async def test_instances_starting_together_create_the_schema_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    await asyncio.gather(*(store.connect() for store in stores))
    await stores[0].put_item("s", "g", StoredItem("a", {"v": 1}, 1))
    assert [item.id for item in await stores[3].list_items("s", "g")] == ["a"]
    connection = await asyncpg.connect(postgres_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM streamchat_schema") == len(MIGRATIONS), "each once"
    finally:
        await connection.close()
    for store in stores:
        await store.disconnect()
    again = PostgresStore(postgres_url)
    await again.connect()  # a restart migrates nothing and keeps the data
    assert (await again.get_item("s", "g", "a")) == StoredItem("a", {"v": 1}, 1)
    await again.disconnect()


async def test_an_unreachable_database_fails_fast_with_a_clear_error() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing", retry_seconds=0.5)
    with pytest.raises(StoreUnavailable, match="PostgreSQL unreachable"):
        await asyncio.wait_for(store.connect(), 60)  # a bound on a hang: it gives up, however long it takes


async def test_a_call_during_a_database_restart_waits_for_it(private_postgres_store: PostgresStore,
                                                             private_postgres: object) -> None:
    from conftest import PrivatePostgres

    assert isinstance(private_postgres, PrivatePostgres)
    await private_postgres_store.state_set("s", "before", {"ok": True})
    await asyncio.to_thread(private_postgres.stop)
    write = asyncio.create_task(private_postgres_store.state_set("s", "during", {"ok": True}))
    await asyncio.sleep(1.0)  # room for a failure that must not come: nothing signals a write still waiting
    assert not write.done(), "the write should wait for the database, not fail"
    await asyncio.to_thread(private_postgres.start)
    await asyncio.wait_for(write, 20)
    assert await private_postgres_store.state_list("s") == {"before": {"ok": True}, "during": {"ok": True}}


async def test_a_catalog_touch_that_meets_a_delete_between_its_statements_makes_the_record_again(
    postgres_url: str,
) -> None:
    """A message's touch finds the record (its insert does nothing), then a delete commits before its
    update: the record is made anew for the message, never a failed request (it was a 500)."""
    store = PostgresStore(postgres_url)
    await store.connect()
    catalog = PostgresCatalog(store)
    blocker = await asyncpg.connect(postgres_url)
    try:
        await catalog.touch("c1", None, "m1", "the first message", "2026-12-07T00:00:00.000Z")
        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM catalog_conversations WHERE conversation_id = 'c1' FOR UPDATE")
            touching = asyncio.create_task(
                catalog.touch("c1", None, "m2", "a message meeting the delete", "2026-12-07T00:00:01.000Z"))

            async def waiting_for_the_row() -> bool:
                return bool(await blocker.fetchval("SELECT count(*) FROM pg_stat_activity "
                                                   "WHERE wait_event_type = 'Lock' AND datname = current_database()"))

            await until(waiting_for_the_row, "the touch's update waiting for the row the delete holds")
            assert not touching.done(), "its update waits for the row the delete holds"
            await blocker.execute("DELETE FROM catalog_conversations WHERE conversation_id = 'c1'")
        record = await asyncio.wait_for(touching, 10)
        assert (record.conversation_id, record.title) == ("c1", "a message meeting the delete")
        assert (await catalog.get("c1")) == record
    finally:
        await blocker.close()
        await store.disconnect()
