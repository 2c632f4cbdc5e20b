"""Fixtures of the chat integrations: fake Slack, Mattermost (HTTP and WebSocket) and Twilio servers
on 127.0.0.1, the environment that points the service at them, installs, and the helpers a test
needs to talk like a provider (signed requests) or like the platform (link confirmations)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from urllib.parse import unquote, urlencode

import aio_pika
import httpx
import orjson
import pytest

from schemas.rows import ParkedMessage
from tests.conftest import TEAM, eventually, queue_depth
from tests.fakes import mattermost as fake_mattermost
from tests.fakes import slack as fake_slack
from tests.fakes import twilio as fake_twilio
from tests.fakes.mattermost import FakeMattermostState
from tests.fakes.server import BackgroundServer
from tests.fakes.slack import FakeSlackState
from tests.fakes.twilio import FakeTwilioState
from tests.tools.conftest import BrokerCaller
from worker.cli import dead
from worker.core import signing
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.services import ServiceRunner, lock_key
from worker.runtime.worker import Worker

SLACK_SIGNING_SECRET = "slack-signing-secret"


# --- fake providers ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_slack_server() -> Iterator[tuple[FakeSlackState, str]]:
    state = FakeSlackState()
    server = BackgroundServer(fake_slack.build_app(state)).start()
    yield state, server.url
    server.stop()


@pytest.fixture
def slack(fake_slack_server: tuple[FakeSlackState, str]) -> FakeSlackState:
    state, _ = fake_slack_server
    state.reset()
    return state


@pytest.fixture(scope="session")
def fake_mattermost_server() -> Iterator[tuple[FakeMattermostState, str]]:
    state = FakeMattermostState()
    server = BackgroundServer(fake_mattermost.build_app(state)).start()
    yield state, server.url
    server.stop()


@pytest.fixture
def mattermost(fake_mattermost_server: tuple[FakeMattermostState, str]) -> FakeMattermostState:
    state, _ = fake_mattermost_server
    state.close_all()  # a listener left over from another test
    state.reset()
    return state


@pytest.fixture(scope="session")
def fake_twilio_server() -> Iterator[tuple[FakeTwilioState, str]]:
    state = FakeTwilioState()
    server = BackgroundServer(fake_twilio.build_app(state)).start()
    yield state, server.url
    server.stop()


@pytest.fixture
def twilio(fake_twilio_server: tuple[FakeTwilioState, str]) -> FakeTwilioState:
    state, _ = fake_twilio_server
    state.reset()
    return state


# --- configuration ----------------------------------------------------------------------------------


@pytest.fixture
def env(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    fake_slack_server: tuple[FakeSlackState, str],
    fake_twilio_server: tuple[FakeTwilioState, str],
) -> dict[str, str]:
    """The shared test environment plus the chat providers' settings."""
    slack_url = fake_slack_server[1]
    values = {
        "IW_SIGNING_KEY": "chat-test-signing-key-" + uuid.uuid4().hex,
        "IW_SERVICE_POLL_INTERVAL": "0.3",
        "IW_SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "IW_SLACK_CLIENT_ID": fake_slack.CLIENT_ID,
        "IW_SLACK_CLIENT_SECRET": fake_slack.CLIENT_SECRET,
        "IW_SLACK_API_URL": f"{slack_url}/api",
        "IW_SLACK_AUTHORIZE_URL": f"{slack_url}/oauth/v2/authorize",
        "IW_WHATSAPP_ACCOUNT_SID": fake_twilio.ACCOUNT_SID,
        "IW_WHATSAPP_AUTH_TOKEN": fake_twilio.AUTH_TOKEN,
        "IW_WHATSAPP_API_URL": fake_twilio_server[1],
        "IW_WHATSAPP_MEDIA_HOSTS": "127.0.0.1",
        "IW_WHATSAPP_MEDIA_REDIRECT_HOSTS": "localhost",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**env, **values}


# --- installs ---------------------------------------------------------------------------------------


@pytest.fixture
async def slack_integration(runtime: Runtime, slack: FakeSlackState) -> Any:
    record, _ = await install(
        runtime,
        InstallRequest(
            "slack",
            TEAM,
            {
                "teamId": fake_slack.TEAM_ID,
                "teamName": "Acme",
                "accessToken": slack.new_bot_token(),
                "botUserId": fake_slack.BOT_USER_ID,
            },
            source="test",
        ),
    )
    return record


MATTERMOST_WEBHOOK_TOKEN = "mm-outgoing-webhook-token"


@pytest.fixture
async def mattermost_integration(
    runtime: Runtime, mattermost: FakeMattermostState, fake_mattermost_server: tuple[FakeMattermostState, str]
) -> Any:
    record, _ = await install(
        runtime,
        InstallRequest(
            "mattermost",
            TEAM,
            {
                "url": fake_mattermost_server[1],
                "token": fake_mattermost.TOKEN,
                "teamNotificationChannelId": "team0000000000000000000000",
                "webhookToken": MATTERMOST_WEBHOOK_TOKEN,
            },
            source="test",
        ),
    )
    return record


@pytest.fixture
async def services(runtime: Runtime) -> AsyncIterator[ServiceRunner]:
    """The services runner of a worker process, in this test's process."""
    runner = ServiceRunner(runtime, poll_interval=0.2)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


WHATSAPP_NUMBER = "+14155238886"


@pytest.fixture
async def whatsapp_integration(runtime: Runtime, twilio: FakeTwilioState) -> Any:
    record, _ = await install(runtime, InstallRequest("whatsapp", TEAM, {"number": WHATSAPP_NUMBER}, source="test"))
    return record


# --- talking like Twilio --------------------------------------------------------------------------------

WHATSAPP_URL = "https://iw.example.com/webhooks/whatsapp"


def twilio_signature(url: str, params: list[tuple[str, str]], token: str = fake_twilio.AUTH_TOKEN) -> str:
    text = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha1).digest()).decode()


def whatsapp_message(
    body: str,
    *,
    sender: str = "+15551230001",
    name: str = "Alice",
    to: str = WHATSAPP_NUMBER,
    sid: str | None = None,
    media: Sequence[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    sid = sid or "SM" + uuid.uuid4().hex
    params = [
        ("MessageSid", sid),
        ("SmsMessageSid", sid),
        ("SmsSid", sid),
        ("AccountSid", fake_twilio.ACCOUNT_SID),
        ("From", f"whatsapp:{sender}"),
        ("To", f"whatsapp:{to}"),
        ("Body", body),
        ("NumMedia", str(len(media))),
        ("NumSegments", "1"),
        ("ProfileName", name),
        ("WaId", sender.lstrip("+")),
        ("SmsStatus", "received"),
        ("ApiVersion", "2010-04-01"),
    ]
    for i, (url, content_type) in enumerate(media):
        params += [(f"MediaUrl{i}", url), (f"MediaContentType{i}", content_type)]
    return params


async def post_whatsapp(
    ingress: httpx.AsyncClient,
    params: list[tuple[str, str]],
    *,
    signed_url: str = WHATSAPP_URL,
    signature: str | None = None,
) -> httpx.Response:
    body = urlencode(params)
    return await ingress.post(
        "/webhooks/whatsapp",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature if signature is not None else twilio_signature(signed_url, params),
            "I-Twilio-Idempotency-Token": uuid.uuid4().hex,
        },
    )


# --- talking like Slack ---------------------------------------------------------------------------------


def signed_slack(
    payload: dict[str, Any],
    *,
    timestamp: int | None = None,
    secret: str = SLACK_SIGNING_SECRET,
    retry: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(payload)
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    signature = "v0=" + hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/json",
    }
    if retry is not None:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    return body, headers


def slack_event(
    event: dict[str, Any], *, event_id: str | None = None, team_id: str = fake_slack.TEAM_ID
) -> dict[str, Any]:
    return {
        "token": "verification-token",
        "team_id": team_id,
        "api_app_id": "A0APP",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team_id, "user_id": fake_slack.BOT_USER_ID, "is_bot": True}],
    }


def mention(
    text: str,
    *,
    user: str = "U0ALICE",
    channel: str = "C0GENERAL",
    ts: str | None = None,
    thread_ts: str | None = None,
    files: list[dict[str, Any]] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": f"<@{fake_slack.BOT_USER_ID}> {text}",
        "ts": ts or f"{time.time():.6f}",
        "channel": channel,
        "event_ts": ts or f"{time.time():.6f}",
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    if files:
        event["files"] = files
    return slack_event(event, event_id=event_id)


async def post_slack(ingress: httpx.AsyncClient, payload: dict[str, Any], **kwargs: Any) -> httpx.Response:
    body, headers = signed_slack(payload, **kwargs)
    return await ingress.post("/webhooks/slack", content=body, headers=headers)


# --- acting like the platform ---------------------------------------------------------------------------


_TOKEN_RE = re.compile(r"[?&]token=([^\s&)]+)")


def link_token_in(text: str) -> str:
    found = _TOKEN_RE.search(text)
    assert found, f"no association link in {text!r}"
    return unquote(found.group(1))


async def confirm_link(
    ingress: httpx.AsyncClient, env: dict[str, str], token: str, user_id: str, team_id: str = TEAM
) -> httpx.Response:
    return await ingress.post(
        "/links",
        json={"token": token, "user_id": user_id, "team_id": team_id},
        headers={"Authorization": f"Bearer {env['IW_ADMIN_TOKEN']}"},
    )


async def link_count(runtime: Runtime) -> int:
    return int(await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link"))


async def parked(runtime: Runtime) -> list[ParkedMessage]:
    return await dead.list_parked(runtime.broker, None)


async def link_directly(runtime: Runtime, integration: Any, external_user_id: str, user_id: str) -> None:
    """A link row as a confirmed link leaves it (for tests about what happens once linked)."""
    await runtime.pool.execute(
        """INSERT INTO integration_user_link (team_id, user_id, external_user_id, integration_id, integration_type)
           VALUES ($1, $2, $3, $4, $5)""",
        integration.team_id,
        user_id,
        external_user_id,
        integration.id,
        integration.type,
    )


async def settled(runtime: Runtime, worker: Worker, type_: str) -> None:
    """Nothing left on the type's queue and nothing in flight in the worker."""

    async def empty() -> bool:
        return await queue_depth(runtime, runtime.topology.queues(type_)) == 0

    await eventually(empty)
    await worker.wait_idle()


def spawn_worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`integration-worker worker` as its own process, configured by environment, as ops run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def listener_holder(runtime: Runtime, integration: Any, service: str = "listener") -> tuple[int, str] | None:
    """(backend pid, application name) of the session holding the service's lease, if any."""
    key = lock_key(runtime.settings.database_schema, integration.type, service, integration.id) & 0xFFFFFFFFFFFFFFFF
    row = await runtime.pool.fetchrow(
        """SELECT l.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 AND l.objid::bigint = $2""",
        key >> 32,
        key & 0xFFFFFFFF,
    )
    return (int(row["pid"]), str(row["application_name"])) if row is not None else None


def _b64json(part: str) -> dict[str, Any]:
    return dict(orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def tampered_tokens(token: str, signing_key: str) -> dict[str, str]:
    """Variants of a genuine link token that must all be refused."""
    header, body, signature = token.split(".")
    claims = {k: v for k, v in _b64json(body).items() if k not in ("aud", "iat", "exp")}
    return {
        "altered": f"{header}.{_b64({**_b64json(body), 'sub': 'someone-else'})}.{signature}",
        "forged": signing.sign("a-key-the-attacker-chose-for-this-test", "link", claims, 3600),
        "expired": signing.sign(signing_key, "link", claims, -5),
        "other purpose": signing.sign(signing_key, "oauth:slack", claims, 3600),
        "garbage": "not-a-token",
    }


async def assert_tampered_tokens_link_nobody(
    ingress: httpx.AsyncClient, runtime: Runtime, env: dict[str, str], token: str
) -> None:
    for what, bad in tampered_tokens(token, env["IW_SIGNING_KEY"]).items():
        response = await confirm_link(ingress, env, bad, "user-mallory")
        assert response.status_code == 400, (what, response.text)
        assert "link token refused" in response.json()["error"], what
    assert await link_count(runtime) == 0


@pytest.fixture
async def caller(runtime: Runtime) -> AsyncIterator[BrokerCaller]:
    """Another service (the agent's) calling an action over the broker and waiting for its answer."""
    connection = await aio_pika.connect(runtime.settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        answers = BrokerCaller(channel, queue, runtime.topology.incoming)
        await queue.consume(answers.on_reply, no_ack=True)
        yield answers
