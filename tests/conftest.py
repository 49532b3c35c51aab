"""Shared fixtures: a real fake-provider process and real streamchat server processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import InProcessServer
from streamchat.framework.store import MemoryStore, PostgresStore, SQLiteStore, Store
from streamchat.testing.databases import create_database, drop_database
from streamchat.testing.processes import free_port, start_process, stop_process

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@dataclass
class FakeProvider:
    url: str

    def script(self, **settings: Any) -> None:
        httpx.post(f"{self.url}/control", json=settings).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/control/reset").raise_for_status()

    def release(self) -> None:
        httpx.post(f"{self.url}/control/release").raise_for_status()

    def release_stream(self, number: int) -> None:
        """Release the `number`-th reply alone (its index in `streams()`, as `tag` counts); the others stay held."""
        httpx.post(f"{self.url}/control/release", json={"stream": number}).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/control/requests").json()["requests"])

    def header_names(self) -> list[list[str]]:
        """The header names of each request since the last reset (lower case, sorted)."""
        return list(httpx.get(f"{self.url}/control/requests").json()["headers"])

    def streams(self) -> list[dict[str, Any]]:
        """One entry per reply streamed since the last reset: tokens sent, finished, held, closed by the client."""
        return list(httpx.get(f"{self.url}/control/requests").json()["streams"])

    async def until_held(self, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until `count` replies are held open by `hold_after` (each has sent its first tokens)."""
        deadline = time.monotonic() + timeout
        while True:
            streams = await asyncio.to_thread(self.streams)
            if sum(1 for stream in streams if stream.get("held")) >= count:
                return streams
            assert time.monotonic() < deadline, f"{count} held replies expected within {timeout:g}s: {streams}"
            await asyncio.sleep(0.02)

    async def until_closed_by_client(self, number: int, timeout: float = 30) -> dict[str, Any]:
        """Wait until the client of the `number`-th reply has hung up on it (an endless reply ends no other way)."""
        deadline = time.monotonic() + timeout
        while True:
            streams = await asyncio.to_thread(self.streams)
            if len(streams) > number and streams[number]["closed_by_client_at"] is not None:
                return streams[number]
            assert time.monotonic() < deadline, f"reply {number} not closed by its client in {timeout:g}s: {streams}"
            await asyncio.sleep(0.02)


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def logs(self) -> str:
        return self.log.read_text()

    def client(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, **options)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        return stop_process(self.process, sig, timeout)


InProcessStarter = Callable[..., Awaitable[InProcessServer]]


#: The test files that take longest, longest first. `./scripts/test` runs the files on two workers, each
#: file on one, in collection order: starting these first lets the many short files fill in around them,
#: so both workers finish together instead of one running a long file alone at the end.
LONG_FILES = ("test_schema_fuzz.py", "test_bench.py", "test_scale.py", "test_page.py", "test_local_model.py",
              "test_fencing.py", "test_full_disk.py", "test_races.py", "test_delete.py", "test_guard.py",
              "test_ai_sdk_client_tools.py", "test_ai_sdk_tools.py", "test_tool_instances.py")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def place(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)

    items.sort(key=place)  # stable: each file keeps its own order


@pytest.fixture(scope="session")
def fake_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeProvider]:
    port = free_port()
    log = tmp_path_factory.mktemp("fake") / "fake.log"
    process = start_process(
        [sys.executable, "-m", "streamchat.testing.fake_openai", "--port", str(port)],
        dict(os.environ), log, f"http://127.0.0.1:{port}/control/requests", cwd=ROOT,
    )
    yield FakeProvider(f"http://127.0.0.1:{port}")
    stop_process(process, timeout=10)



@pytest.fixture
def second_fake(tmp_path: Path) -> Iterator[FakeProvider]:
    """Another OpenAI-compatible server of its own, for a models file with two endpoints."""
    port = free_port()
    process = start_process([sys.executable, "-m", "streamchat.testing.fake_openai", "--port", str(port)],
                            {}, tmp_path / "fake2.log", f"http://127.0.0.1:{port}/control/requests", cwd=ROOT)
    yield FakeProvider(f"http://127.0.0.1:{port}")
    stop_process(process, timeout=10)


def two_models_file(tmp_path: Path, fast: FakeProvider, smart: FakeProvider, smart_params: str) -> Path:
    """A models file: `fast` (the default, its key in FAST_KEY, temperature 0.3) on one fake provider,
    `smart` (no key, `smart_params` as its [models.params] lines) on the other."""
    path = tmp_path / "models.toml"
    path.write_text(f"""
[[models]]
name = "fast"
provider = "openai"
base_url = "{fast.url}/v1"
api_key_env = "FAST_KEY"
model = "fast-model"
default = true
[models.params]
temperature = 0.3

[[models]]
name = "smart"
provider = "openai"
base_url = "{smart.url}/v1"
model = "smart-model"
[models.params]
{smart_params}
""")
    return path

@pytest.fixture(autouse=True)
def _fresh_fake(request: pytest.FixtureRequest) -> None:
    """Every test starts with the fake provider's default script and an empty request log."""
    if "fake_provider" in request.fixturenames:
        request.getfixturevalue("fake_provider").reset()


class ServerFactory:
    def __init__(self, fake: FakeProvider, tmp: Path) -> None:
        self.fake = fake
        self.tmp = tmp
        self.servers: list[Server] = []

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMCHAT_", "OPENAI_"))}
        env.update({
            "OPENAI_API_KEY": "sk-test-fake-provider",
            "OPENAI_BASE_URL": f"{self.fake.url}/v1",
            "OPENAI_MODEL": "fake-model",
            "STREAMCHAT_STATE_URL": f"sqlite:///{self.tmp / 'state.db'}",
            "STREAMCHAT_DATA_DIR": str(self.tmp / "data"),
            "STREAMCHAT_RETRY_DELAY": "0.05",
            "STREAMCHAT_LOG_LEVEL": "INFO",
        })
        return env

    def start(self, **overrides: str | None) -> Server:
        """A server with these settings on top of the test defaults; None removes a setting."""
        env = self.base_env()
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        port = free_port()
        log = self.tmp / f"server-{port}.log"
        process = start_process(
            [sys.executable, "-m", "streamchat", "serve", "--port", str(port)], env, log,
            f"http://127.0.0.1:{port}/healthz", cwd=ROOT,
        )
        server = Server(port, process, log, env)
        self.servers.append(server)
        return server

    def start_local(self, **overrides: str) -> Server:
        """A server on the embedded model: no OpenAI settings at all, as a new user runs it."""
        return self.start(OPENAI_API_KEY=None, OPENAI_BASE_URL=None, OPENAI_MODEL=None, **overrides)

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="session")
def session_servers(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    factory = ServerFactory(fake_provider, tmp_path_factory.mktemp("session-server"))
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def server(session_servers: ServerFactory) -> Server:
    """One shared server on the fake provider with a fresh SQLite file, for tests that need nothing special."""
    return session_servers.start()


@pytest.fixture
def servers(fake_provider: FakeProvider, tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers of your own (own database, own settings); stopped after the test."""
    factory = ServerFactory(fake_provider, tmp_path)
    TEST_SERVERS.append(factory)
    yield factory
    TEST_SERVERS.remove(factory)
    factory.stop_all()


#: The running test's own servers. A backend fixture (a database, a private Redis) may be torn down
#: before them; it stops them first, or each would spend its whole shutdown time on a vanished backend.
TEST_SERVERS: list[ServerFactory] = []


def stop_test_servers() -> None:
    for factory in TEST_SERVERS:
        factory.stop_all()


@pytest.fixture
async def in_process(
    servers: ServerFactory, monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[InProcessStarter]:
    """Start the server in this process with these settings on top of the test defaults (the same
    as `servers.start`'s); its lifespan ends with the test, or at its `shutdown()`."""
    import streamchat.settings
    from streamchat.app import create_app

    running = contextlib.AsyncExitStack()

    async def start(**overrides: str) -> InProcessServer:
        for name in [name for name in os.environ if name.startswith(("STREAMCHAT_", "OPENAI_"))]:
            monkeypatch.delenv(name)
        for name, value in {**servers.base_env(), **overrides}.items():
            if name.startswith(("STREAMCHAT_", "OPENAI_")):  # the rest is this process's own environment
                monkeypatch.setenv(name, value)
        settings = streamchat.settings.Settings.from_env(env_file=None)
        monkeypatch.setattr(streamchat.settings, "_settings", settings)  # what the steps read
        app = create_app(settings)
        lifespan = contextlib.AsyncExitStack()
        await lifespan.enter_async_context(app.router.lifespan_context(app))
        running.push_async_callback(lifespan.aclose)
        return InProcessServer(app, shutdown=lifespan.aclose)

    async with running:
        yield start


# -- Redis + PostgreSQL deployments ----------------------------------------------------------

REDIS_URL = os.environ.get("STREAMCHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_ADMIN_URL = os.environ.get("STREAMCHAT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _reachable(url: str, default_port: int) -> bool:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis the multi-instance tests use; missing is a failure, never a skip."""
    assert _reachable(REDIS_URL, 6379), (
        f"Redis is not reachable at {REDIS_URL}: ./scripts/test starts it when it is installed "
        "(set STREAMCHAT_TEST_REDIS_URL to use another one)")
    return REDIS_URL


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the real server for one test, dropped afterwards."""
    assert _reachable(POSTGRES_ADMIN_URL, 5432), (
        f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: ./scripts/test starts it when it is installed "
        "(set STREAMCHAT_TEST_POSTGRES_URL to use another one)")
    url = create_database(POSTGRES_ADMIN_URL)
    yield url
    stop_test_servers()
    drop_database(POSTGRES_ADMIN_URL, url)


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Server settings for each single-instance store: the SQLite default, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return {}
    return {"STREAMCHAT_STATE_URL": request.getfixturevalue("postgres_url")}


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each store backend in turn, connected: memory, SQLite in a temporary file, a fresh PostgreSQL database."""
    backend: Store
    if request.param == "memory":
        backend = MemoryStore()
    elif request.param == "sqlite":
        backend = SQLiteStore(str(tmp_path / "s.db"))
    else:
        backend = PostgresStore(request.getfixturevalue("postgres_url"))
    await backend.connect()
    yield backend
    await backend.disconnect()


@pytest.fixture
def cluster(servers: ServerFactory, redis_url: str, postgres_url: str) -> Cluster:
    """Start instances that share one Redis (own key prefix) and one fresh PostgreSQL database."""
    return Cluster(servers, redis_url, postgres_url, f"streamchat-test-{uuid.uuid4().hex[:10]}")


@dataclass
class Cluster:
    factory: ServerFactory
    redis_url: str
    postgres_url: str
    prefix: str

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            "STREAMCHAT_BUS_URL": self.redis_url, "STREAMCHAT_STATE_URL": self.postgres_url,
            "STREAMCHAT_REDIS_PREFIX": self.prefix, "STREAMCHAT_BUS_LEASE_SECONDS": "2",
            "STREAMCHAT_BUS_PARTITIONS": "8", **overrides,
        }

    def start(self, **overrides: str) -> Server:
        return self.factory.start(**self.env(**overrides))

    def start_many(self, count: int, **overrides: str) -> list[Server]:
        return [self.start(**overrides) for _ in range(count)]


# -- servers of our own, for restarting mid-test ---------------------------------------------------

class PrivateRedis:
    """A redis-server process of this test's own (no persistence, like the machine's), to restart."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is needed for the Redis restart test (Debian package redis-server)"
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.02)
        raise TimeoutError("redis-server did not start")

    def cli(self, *command: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *command], check=True, capture_output=True,
                              text=True).stdout

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    stop_test_servers()
    redis.kill()


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (initdb in a temporary directory), to restart."""

    BIN = Path("/usr/lib/postgresql")

    def __init__(self) -> None:
        versions = sorted(self.BIN.glob("*/bin/pg_ctl"))
        assert versions, "PostgreSQL server binaries are needed for the restart test (Debian package postgresql)"
        self.bin = versions[-1].parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="streamchat-pg-"))
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run([*self.as_postgres, str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                        "-U", "postgres", "--no-sync"], check=True, capture_output=True)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run([*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                        "-l", str(self.dir / "log"), "-w", *args], check=True, capture_output=True)

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    postgres = PrivatePostgres()
    postgres.start()
    yield postgres
    stop_test_servers()
    postgres.remove()


@pytest.fixture
async def private_postgres_store(private_postgres: PrivatePostgres) -> Any:
    from streamchat.framework.store import PostgresStore

    store = PostgresStore(private_postgres.url, retry_seconds=30)
    await store.connect()
    yield store
    await store.disconnect()
