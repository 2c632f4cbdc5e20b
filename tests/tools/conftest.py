"""Fixtures of the tools and install-lifecycle tests: the real registry plus a `probe` integration
whose action acts as a user, a fake Telegram, HTTP clients with the service and admin tokens, a
caller on the broker as another service would be one, and the ingress served over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import httpx
import orjson
import pytest

from integrations.registry import REGISTRY
from schemas.envelope import Envelope, dumps_envelope
from tests.conftest import TEAM, teardown
from tests.fakes.server import BackgroundServer
from tests.fakes.telegram import FakeTelegramState, build_app
from tests.tools import probe
from worker.cli.serve import create_app
from worker.core.settings import Settings
from worker.platform import attach
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.sdk import Registry

OTHER_TEAM = "team-2"
GITHUB_TOOLS = [  # as listed: by name
    "github_comment",
    "github_connect_repository",
    "github_list_branches",
    "github_list_pull_requests",
    "github_list_repositories",
    "github_pull_request_status",
]
BOT_TOKEN = "7000001:AAE-test-token-for-the-fake-telegram-0001"
OTHER_BOT_TOKEN = "7000002:AAE-test-token-for-the-fake-telegram-0002"
CHAT = 42

TOOLS_REGISTRY = Registry([*(i for i in REGISTRY if i.type != "integration"), probe.integration])


@pytest.fixture(scope="session")
def fake_telegram_server() -> Iterator[tuple[FakeTelegramState, str]]:
    state = FakeTelegramState()
    server = BackgroundServer(build_app(state)).start()
    yield state, server.url
    server.stop()


@pytest.fixture
def telegram(fake_telegram_server: tuple[FakeTelegramState, str]) -> FakeTelegramState:
    state, _ = fake_telegram_server
    state.reset()
    for token, bot_id, username in ((BOT_TOKEN, 7000001, "team_bot"), (OTHER_BOT_TOKEN, 7000002, "other_bot")):
        state.bots[token] = {"id": bot_id, "is_bot": True, "first_name": "Bot", "username": username}
    state.chats.add(CHAT)
    return state


@pytest.fixture
def settings(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fake_telegram_server: tuple[FakeTelegramState, str]
) -> Settings:
    monkeypatch.setenv("IW_TELEGRAM_API_URL", fake_telegram_server[1])
    monkeypatch.setenv("IW_TOOL_TIMEOUT", "15")
    return Settings()


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = attach(Runtime(settings, TOOLS_REGISTRY))
    await rt.start()
    try:
        yield rt
    finally:
        await teardown(rt)


def _client(runtime: Runtime, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://ingress", headers=headers
    )


@pytest.fixture
async def service(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The ingress as an agent's backend calls it: with IW_SERVICE_TOKEN."""
    assert runtime.settings.service_token is not None
    async with _client(runtime, runtime.settings.service_token.get_secret_value()) as client:
        yield client


@pytest.fixture
async def admin(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The ingress as the platform's backend calls it: with IW_ADMIN_TOKEN."""
    assert runtime.settings.admin_token is not None
    async with _client(runtime, runtime.settings.admin_token.get_secret_value()) as client:
        yield client


@pytest.fixture
async def telegram_integration(runtime: Runtime, telegram: FakeTelegramState) -> Any:
    record, _ = await install(runtime, InstallRequest("telegram", TEAM, {"botToken": BOT_TOKEN}, source="test"))
    return record


class BrokerCaller:
    """Another service calling an action over the broker: request/reply with its own reply queue."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, queue: aio_pika.abc.AbstractQueue, incoming: str):
        self.channel = channel
        self.queue = queue
        self.incoming = incoming
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = self.replies.get(message.correlation_id or "")
        if future is not None and not future.done():
            future.set_result(orjson.loads(message.body))

    async def call(self, envelope: Envelope, timeout: float = 15.0) -> dict[str, Any]:
        correlation_id = uuid.uuid4().hex
        self.replies[correlation_id] = asyncio.get_running_loop().create_future()
        exchange = await self.channel.get_exchange(self.incoming)
        await exchange.publish(
            aio_pika.Message(
                dumps_envelope(envelope),
                message_id=envelope.id,
                reply_to=self.queue.name,
                correlation_id=correlation_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            envelope.routing_key,
        )
        return await asyncio.wait_for(self.replies[correlation_id], timeout)


@pytest.fixture
async def broker_caller(runtime: Runtime) -> AsyncIterator[BrokerCaller]:
    connection = await aio_pika.connect(runtime.settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        caller = BrokerCaller(channel, queue, runtime.topology.incoming)
        await queue.consume(caller.on_reply, no_ack=True)
        yield caller
