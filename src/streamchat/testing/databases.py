"""Throw-away PostgreSQL databases for tests and the benchmark, on a server they may create them on."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid

import asyncpg


def run_sql(url: str, sql: str) -> None:
    """Run one statement on the database at `url` (made for set-up: a new connection each call)."""
    async def run() -> None:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    # In a thread of its own, so callers inside a running event loop (async fixtures) can use it.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def create_database(admin_url: str, prefix: str = "streamchat_test") -> str:
    """Create an empty database next to `admin_url`'s; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    run_sql(admin_url, f'CREATE DATABASE "{name}"')
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_database(admin_url: str, url: str) -> None:
    """Drop a database made by `create_database`, closing its connections."""
    name = url.rsplit("/", 1)[1]
    run_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
