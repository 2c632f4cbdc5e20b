"""Fixtures for the Google integrations: a fake Google on loopback (one server per session, a
fresh state per test), the settings pointing at it, and helpers to link users and push."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from typing import Any, cast

import aio_pika
import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from schemas.envelope import Envelope, dumps_envelope
from tests.conftest import TEAM, eventually
from tests.fakes.google import CLIENT_ID, CLIENT_SECRET, FakeGoogleState, StateProxy, build_app
from tests.fakes.server import BackgroundServer
from worker.cli.serve import create_app
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.sdk import IntegrationRecord, NewLink, TokenGrant

PUSH_ACCOUNT = "gmail-push@iw-test.iam.gserviceaccount.com"
PUSH_AUDIENCE = "https://iw.example.com/webhooks/gmail"
TOPIC = "projects/iw-test/topics/gmail"
USER = "user-ann"
ANN = "ann@acme.example"


@pytest.fixture(scope="session")
def push_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def google_server(push_key: rsa.RSAPrivateKey) -> Iterator[tuple[StateProxy, str]]:
    proxy = StateProxy(FakeGoogleState(push_key=push_key))
    server = BackgroundServer(build_app(cast(FakeGoogleState, proxy))).start()
    yield proxy, server.url
    server.stop()


@pytest.fixture
def google(google_server: tuple[StateProxy, str], push_key: rsa.RSAPrivateKey) -> FakeGoogleState:
    state = FakeGoogleState(push_key=push_key)
    google_server[0].use(state)
    return state


@pytest.fixture
def env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, google_server: tuple[StateProxy, str]) -> dict[str, str]:
    url = google_server[1]
    extra = {"IW_LEASE_TTL": "1"}
    for prefix in ("IW_GMAIL_", "IW_GOOGLE_CALENDAR_"):
        extra |= {
            f"{prefix}CLIENT_ID": CLIENT_ID,
            f"{prefix}CLIENT_SECRET": CLIENT_SECRET,
            f"{prefix}AUTH_URL": f"{url}/auth",
            f"{prefix}TOKEN_URL": f"{url}/token",
            f"{prefix}USERINFO_URL": f"{url}/userinfo",
            f"{prefix}REVOKE_URL": f"{url}/revoke",
        }
    extra |= {
        "IW_GMAIL_API_URL": url,
        "IW_GMAIL_JWKS_URL": f"{url}/jwks",
        "IW_GMAIL_PUBSUB_TOPIC": TOPIC,
        "IW_GMAIL_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
        "IW_GOOGLE_CALENDAR_API_URL": f"{url}/calendar/v3",
    }
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    return {**env, **extra}


# --- installing and linking -----------------------------------------------------------------------------


async def install_type(runtime: Runtime, type_: str, config: dict[str, Any] | None = None) -> IntegrationRecord:
    record, _ = await install(runtime, InstallRequest(type_, TEAM, config or {}, source="test"))
    return record


async def link_user(
    runtime: Runtime,
    google: FakeGoogleState,
    integration: IntegrationRecord,
    *,
    address: str = ANN,
    user_id: str = USER,
    expires_in: float = 3600,
    config: dict[str, Any] | None = None,
) -> tuple[str, str, str]:
    """A finished consent: tokens stored on the link (encrypted). Returns (link id, access, refresh)."""
    access, refresh = google.grant(address, expires_in=max(expires_in, 1))
    link_id = await runtime.tokens.save(
        NewLink(
            team_id=integration.team_id,
            integration_id=integration.id,
            integration_type=integration.type,
            user_id=user_id,
            external_user_id=address,
            external_user_name="Ann",
            grant=TokenGrant(access, expires_in, refresh),
            config=config,
        )
    )
    return link_id, access, refresh


async def watched(runtime: Runtime, google: FakeGoogleState, integration: IntegrationRecord, link_id: str) -> None:
    """The mailbox as right after users.watch: the cursor at the mailbox's current history id."""
    box = google.mailbox(ANN)
    await runtime.pool.execute(
        """INSERT INTO gmail_mailboxes (team_id, link_id, integration_id, email, history_id, watch_expires_at,
               watch_renewed_at) VALUES ($1, $2, $3, $4, $5::numeric, now() + interval '7 days', now())""",
        integration.team_id,
        link_id,
        integration.id,
        box.email,
        str(box.history_id),
    )


def mail(
    sender: str,
    subject: str,
    text: str | None = "Hello",
    *,
    html: str | None = None,
    to: str = ANN,
    charset: str = "utf-8",
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example>"
    if text is not None:
        message.set_content(text, charset=charset)
        if html is not None:
            message.add_alternative(html, subtype="html", charset=charset)
    elif html is not None:
        message.set_content(html, subtype="html", charset=charset)
    return message


# --- pushes -----------------------------------------------------------------------------------------------


def push_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "aud": PUSH_AUDIENCE,
        "azp": "113774264463038321964",
        "email": PUSH_ACCOUNT,
        "email_verified": True,
        "exp": now + 3600,
        "iat": now,
        "iss": "https://accounts.google.com",
        "sub": "113774264463038321964",
    }
    claims.update(overrides)
    return claims


def push_request(
    google: FakeGoogleState,
    *,
    address: str = ANN,
    history_id: int | None = None,
    message_id: str | None = None,
    token: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    data = {"emailAddress": address, "historyId": history_id or google.mailbox(address).history_id}
    body = {
        "message": {
            "data": base64.b64encode(orjson.dumps(data)).decode(),
            "messageId": message_id or str(uuid.uuid4().int)[:16],
            "publishTime": "2026-11-20T10:00:00Z",
        },
        "subscription": "projects/iw-test/subscriptions/gmail-push",
    }
    jwt_token = token if token is not None else google.sign_push(push_claims())
    return orjson.dumps(body), {"Authorization": f"Bearer {jwt_token}", "Content-Type": "application/json"}


# --- commands -----------------------------------------------------------------------------------------


class Replies:
    """Answers to commands sent with `reply_to`, as an agent-tool caller gets them."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue
        self.items: dict[str, dict[str, Any]] = {}

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.items[message.correlation_id or ""] = orjson.loads(message.body)
        await message.ack()

    async def wait(self, correlation_id: str, timeout: float = 15.0) -> dict[str, Any]:
        result: dict[str, Any] = await eventually(lambda: _get(self.items, correlation_id), timeout)
        return result


async def _get(items: dict[str, dict[str, Any]], key: str) -> dict[str, Any] | None:
    return items.get(key)


@pytest.fixture
async def replies(runtime: Runtime) -> AsyncIterator[Replies]:
    connection = await aio_pika.connect(runtime.settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        collector = Replies(queue)
        await queue.consume(collector.on_message)
        yield collector


async def command(
    runtime: Runtime,
    type_: str,
    name: str,
    payload: dict[str, Any],
    *,
    integration_id: str | None = None,
    user_id: str | None = USER,
    replies: Replies | None = None,
    command_id: str | None = None,
) -> str:
    """Publish `<type>.command.<name>` as another service would; returns the command id."""

    envelope = Envelope(
        id=command_id or f"test:{uuid.uuid4()}",
        type=type_,
        kind="command",
        name=name,
        integration_id=integration_id,
        team_id=TEAM,
        headers={"x-user-id": user_id} if user_id else {},
        payload=payload,
    )
    await runtime.broker.publish(
        runtime.topology.incoming,
        envelope.routing_key,
        dumps_envelope(envelope),
        message_id=envelope.id,
        reply_to=replies.queue.name if replies else None,
        correlation_id=envelope.id if replies else None,
    )
    return envelope.id


async def parked(runtime: Runtime) -> list[dict[str, Any]]:
    """What sits on the parking queue (left there): envelope and headers."""
    connection = await aio_pika.connect(runtime.settings.amqp_url.get_secret_value())
    found = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(runtime.topology.parked, passive=True)
        while True:
            message = await queue.get(fail=False, no_ack=False)
            if message is None:
                break
            found.append({"envelope": orjson.loads(message.body), "headers": dict(message.headers or {})})
        await channel.close()  # unacknowledged: they go back to the queue
    return found


@pytest.fixture
async def admin(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The platform API as the platform's backend calls it: with IW_ADMIN_TOKEN."""
    assert runtime.settings.admin_token is not None
    headers = {"Authorization": f"Bearer {runtime.settings.admin_token.get_secret_value()}"}
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as client:
        yield client


async def http_get(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    return await client.get(url, **kwargs)
