"""Test fixtures. RabbitMQ and PostgreSQL are the real local servers: every test gets its own
PostgreSQL schema and its own broker prefix (exchanges and queues), removed afterwards, so tests
run in any order. Providers are faked over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aio_pika
import asyncpg
import httpx
import orjson
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integrations.registry import REGISTRY
from tests.fakes.github import FakeGitHubState, build_app
from tests.fakes.server import BackgroundServer
from tests.support.probe import PROBE_REGISTRY
from worker.cli.serve import create_app, http_server
from worker.core.settings import Settings
from worker.platform import attach
from worker.platform.install import InstallRequest, install
from worker.runtime import topology as broker_module
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
GITHUB_APP_ID = "12345"
GITHUB_WEBHOOK_SECRET = "test-webhook-secret"
TEAM = "team-1"
INSTALLATION_ID = 4242


def _reachable(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def rabbitmq_and_postgresql() -> None:
    """RabbitMQ and PostgreSQL, for the tests that need them (tests/unit needs neither): a test
    that asks for them fails, with this reason, when they do not answer."""
    missing = [name for name, port in (("RabbitMQ", 5672), ("PostgreSQL", 5432)) if not _reachable(port)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not reachable on 127.0.0.1: start them (see README)", pytrace=False)


async def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """The tests' one way to wait: poll `check` (a plain or an async callable) until it returns
    something truthy, and return that; fail with its last value after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


# --- keys and fakes ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def app_key() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="session")
def fake_github_server(app_key: tuple[str, str]) -> Iterator[tuple[FakeGitHubState, str]]:
    state = FakeGitHubState(app_id=GITHUB_APP_ID, public_key_pem=app_key[1])
    server = BackgroundServer(build_app(state)).start()
    yield state, server.url
    server.stop()


@pytest.fixture
def github(fake_github_server: tuple[FakeGitHubState, str]) -> FakeGitHubState:
    state, _ = fake_github_server
    state.reset()
    state.installations[INSTALLATION_ID] = [
        {"id": 9001, "full_name": "acme/app", "private": True},
        {"id": 9002, "full_name": "acme/docs", "private": False},
    ]
    return state


# --- configuration ----------------------------------------------------------------------------------


@pytest.fixture
def env(
    rabbitmq_and_postgresql: None,
    monkeypatch: pytest.MonkeyPatch,
    app_key: tuple[str, str],
    fake_github_server: tuple[FakeGitHubState, str],
) -> dict[str, str]:
    """The environment of this test's service: also what a subprocess worker gets."""
    suffix = uuid.uuid4().hex[:10]
    values = {
        "IW_AMQP_URL": AMQP_URL,
        "IW_DATABASE_URL": DATABASE_URL,
        "IW_DATABASE_SCHEMA": f"t_{suffix}",
        "IW_BROKER_PREFIX": f"t{suffix}",
        "IW_SECRET_KEYS": Fernet.generate_key().decode(),
        "IW_SIGNING_KEY": "test-signing-key-0123456789abcdef-" + suffix,
        "IW_ADMIN_TOKEN": "test-admin-token-" + suffix,
        "IW_SERVICE_TOKEN": "test-service-token-" + suffix,
        "IW_RETRY_DELAYS": "0.2,0.4",
        "IW_SHARDS": "2",  # every shard queue is a quorum queue: two keep each test's topology quick
        "IW_TENANT_RATE": "0",  # no bulk lane (tests/test_lanes.py turns it on)
        "IW_REBALANCE_INTERVAL": "0.2",
        "IW_WORKER_TTL": "2",
        "IW_DATABASE_POOL_SIZE": "4",
        "IW_SHUTDOWN_GRACE": "10",
        "IW_OUTBOX_RELAY_INTERVAL": "0.5",
        "IW_LOG_FORMAT": "json",
        "IW_WORKER_METRICS_PORT": "0",
        "IW_PUBLIC_URL": "https://iw.example.com",
        "IW_PLATFORM_URL": "https://app.example.com",
        "IW_GITHUB_APP_ID": GITHUB_APP_ID,
        "IW_GITHUB_PRIVATE_KEY": app_key[0],
        "IW_GITHUB_WEBHOOK_SECRET": GITHUB_WEBHOOK_SECRET,
        "IW_GITHUB_API_URL": fake_github_server[1],
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings()


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = attach(Runtime(settings, REGISTRY))
    await rt.start()
    try:
        yield rt
    finally:
        await teardown(rt)


async def teardown(rt: Runtime) -> None:
    # Close the runtime first: a robust connection still reconnecting would declare again
    # the queues it knew, after they were deleted.
    await rt.stop()
    connection = await aio_pika.connect(rt.settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        await broker_module.delete(channel, rt.topology)
    conn = await asyncpg.connect(rt.settings.database_url.get_secret_value())
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{rt.settings.database_schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def probe_runtime(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    """A runtime of the probe integration (tests/support/probe.py), installed for the test
    module's `TEAM`."""
    rt = attach(Runtime(settings, PROBE_REGISTRY))
    await rt.start()
    await install(rt, InstallRequest("probe", getattr(request.module, "TEAM", "team-probe"), {}))
    try:
        yield rt
    finally:
        await teardown(rt)


@pytest.fixture
async def worker(runtime: Runtime) -> AsyncIterator[Worker]:
    w = Worker(runtime)
    await w.start()
    try:
        yield w
    finally:
        await w.stop()


@pytest.fixture
async def ingress(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as client:
        yield client


@pytest.fixture
async def browser(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """A user's browser on the service's public URL: keeps cookies (secure ones too)."""
    app = create_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=runtime.settings.public_url
    ) as client:
        yield client


@pytest.fixture
async def live_ingress(runtime: Runtime) -> AsyncIterator[str]:
    """The ingress app served over HTTP in this event loop (lifespan on: the MCP session manager runs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = http_server(create_app(runtime), "127.0.0.1", port)
    task = asyncio.create_task(server.serve())

    async def serving() -> bool:
        if task.done():
            task.result()  # it failed to start: say why
        return bool(server.started)

    await eventually(serving, timeout=10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


class Results:
    """Result events as another service would receive them: a queue bound to the results exchange."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.items.append(orjson.loads(message.body))
        await message.ack()

    def of(self, event: str) -> list[dict[str, Any]]:
        return [item for item in self.items if item["event"] == event]

    async def all_in(self, runtime: Runtime) -> None:
        """Until everything published to the results exchange so far has arrived here: a marker
        published after it comes after it (one queue keeps the order)."""
        marker = uuid.uuid4().hex
        await runtime.broker.publish(
            runtime.topology.results, "test.marker", orjson.dumps({"event": "test.marker", "id": marker})
        )
        await eventually(lambda: any(item["id"] == marker for item in self.of("test.marker")))

    async def wait_for(self, event: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        async def check() -> list[dict[str, Any]] | None:
            found = self.of(event)
            return found if len(found) >= count else None

        return list(await eventually(check, timeout))


@pytest.fixture
async def results(runtime: Runtime) -> AsyncIterator[Results]:
    collector = Results()
    connection = await aio_pika.connect(runtime.settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(runtime.topology.results, "#")
        await queue.consume(collector.on_message)
        yield collector


# --- GitHub helpers -------------------------------------------------------------------------------------


@pytest.fixture
async def github_integration(runtime: Runtime, github: FakeGitHubState) -> Any:
    record, _ = await install(
        runtime, InstallRequest("github", TEAM, {"installationId": INSTALLATION_ID}, source="test")
    )
    return record


def signed_github(
    event: str, payload: dict[str, Any], *, delivery: str | None = None, secret: str = GITHUB_WEBHOOK_SECRET
) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(payload)
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature,
        "Content-Type": "application/json",
    }


def pull_request_payload(
    *,
    action: str = "opened",
    pr_id: int = 555,
    number: int = 7,
    title: str = "Fixes ABC-12: crash on login",
    body: str = "Also refs XY-3",
    merged: bool = False,
    state: str = "open",
    draft: bool = False,
    reviewers: tuple[str, ...] = (),
    updated_at: str = "2026-11-20T10:00:00Z",
    installation_id: int = INSTALLATION_ID,
) -> dict[str, Any]:
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "id": pr_id,
            "number": number,
            "title": title,
            "body": body,
            "state": state,
            "draft": draft,
            "merged": merged,
            "merged_at": "2026-11-20T10:00:00Z" if merged else None,
            "html_url": f"https://github.com/acme/app/pull/{number}",
            "user": {"login": "octocat", "id": 1, "type": "User"},
            "assignees": [],
            "requested_reviewers": [{"login": r, "id": 100 + i, "type": "User"} for i, r in enumerate(reviewers)],
            "updated_at": updated_at,
        },
        "repository": {"id": 9001, "full_name": "acme/app", "private": True},
        "installation": {"id": installation_id},
        "sender": {"login": "octocat", "id": 1},
    }


async def _declared(runtime: Runtime, queues: str | list[str]) -> list[Any]:
    names = [queues] if isinstance(queues, str) else queues
    connection = await aio_pika.connect(runtime.settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        return [(await channel.declare_queue(name, passive=True)).declaration_result for name in names]


async def queue_consumers(runtime: Runtime, queues: str | list[str]) -> int:
    """Consumers of a queue, or of every queue of a list (a type's shards): the active and those waiting."""
    return sum(int(result.consumer_count or 0) for result in await _declared(runtime, queues))


@contextlib.asynccontextmanager
async def held(
    runtime: Runtime, queues: list[str], quiet: float = 0.5
) -> AsyncIterator[list[aio_pika.abc.AbstractIncomingMessage]]:
    """The messages on these queues (a type's shards), taken by a consumer that never acknowledges
    them: back on their queue when it goes, as with a worker that dies. (Shard queues have a single
    active consumer, which RabbitMQ's basic.get does not serve.)"""
    connection = await aio_pika.connect(runtime.settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=10_000)
        taken: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            taken.append(message)

        for name in queues:
            await (await channel.get_queue(name, ensure=False)).consume(take)
        seen = -1
        while seen != len(taken):  # until nothing more came for `quiet` seconds
            seen = len(taken)
            await asyncio.sleep(quiet)
        yield taken


async def queue_depth(runtime: Runtime, queues: str | list[str]) -> int:
    """Messages ready in a queue, or in every queue of a list (a type's shards)."""
    return sum(int(result.message_count or 0) for result in await _declared(runtime, queues))
