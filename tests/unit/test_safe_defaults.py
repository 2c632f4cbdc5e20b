"""Safe by default, without RabbitMQ or PostgreSQL: a blank secret is no secret, the development
keys never reach the network, a tool token never outlives the maximum in force."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import structlog
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from integrations.registry import REGISTRY
from worker.core import signing
from worker.core.settings import DEV_SIGNING_KEY, InsecureConfiguration, Settings
from worker.runtime.ingress import Ingress
from worker.runtime.runtime import Runtime
from worker.sdk import Integration, Registry

OWN_KEYS = {
    "IW_SECRET_KEYS": Fernet.generate_key().decode(),
    "IW_SIGNING_KEY": "a-signing-key-of-this-deployment-0123456789",
}


@pytest.fixture
def own_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in OWN_KEYS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def blank_secrets(monkeypatch: pytest.MonkeyPatch, own_keys: None) -> AsyncIterator[httpx.AsyncClient]:
    """The ingress of a deployment whose compose file left every webhook secret empty."""
    monkeypatch.setenv("IW_GITHUB_WEBHOOK_SECRET", "")
    monkeypatch.setenv("IW_SLACK_SIGNING_SECRET", "   ")
    monkeypatch.setenv("IW_WHATSAPP_AUTH_TOKEN", "")
    monkeypatch.setenv("IW_PUBLIC_URL", "https://iw.example.com")
    runtime = Runtime(Settings(), REGISTRY)
    try:
        transport = httpx.ASGITransport(app=Ingress(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="https://iw.example.com") as client:
            yield client
    finally:
        await runtime.http.aclose()


async def test_a_webhook_signed_with_an_empty_key_is_refused(blank_secrets: httpx.AsyncClient) -> None:
    body = orjson.dumps({"action": "opened", "installation": {"id": 1}})
    github = await blank_secrets.post(
        "/webhooks/github",
        content=body,
        headers={
            "X-Hub-Signature-256": "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest(),
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": "d-1",
        },
    )
    stamp = str(int(time.time()))
    slack_body = orjson.dumps({"type": "event_callback", "event_id": "Ev1", "team_id": "T1", "event": {}})
    slack = await blank_secrets.post(
        "/webhooks/slack",
        content=slack_body,
        headers={
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": "v0="
            + hmac.new(b"   ", b"v0:" + stamp.encode() + b":" + slack_body, hashlib.sha256).hexdigest(),
        },
    )
    whatsapp = await blank_secrets.post(
        "/webhooks/whatsapp",
        content=b"From=whatsapp%3A%2B1555&To=whatsapp%3A%2B1666&MessageSid=SM1",
        headers={"content-type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "anything"},
    )

    assert github.status_code == 401 and "IW_GITHUB_WEBHOOK_SECRET is not set" in github.json()["error"]
    assert slack.status_code == 401 and "IW_SLACK_SIGNING_SECRET" in slack.json()["error"]
    assert whatsapp.status_code == 401 and "IW_WHATSAPP_AUTH_TOKEN" in whatsapp.json()["error"]


async def test_a_blank_secret_is_logged_as_unset(monkeypatch: pytest.MonkeyPatch, own_keys: None) -> None:
    monkeypatch.setenv("IW_GITHUB_WEBHOOK_SECRET", "")
    with structlog.testing.capture_logs() as logged:
        runtime = Runtime(Settings(), REGISTRY)
    await runtime.http.aclose()
    assert runtime.integration_settings["github"].webhook_secret is None  # type: ignore[union-attr]
    assert {"setting": "IW_GITHUB_WEBHOOK_SECRET", "log_level": "warning"}.items() <= next(
        line for line in logged if "treated as unset" in line["event"]
    ).items()


class _Required(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IW_ACME_")
    api_key: SecretStr


async def test_a_required_secret_left_blank_is_a_start_up_error(
    monkeypatch: pytest.MonkeyPatch, own_keys: None
) -> None:
    monkeypatch.setenv("IW_ACME_API_KEY", " ")
    registry = Registry([Integration(type="acme", name="Acme", description="d", settings=_Required)])
    with pytest.raises(ValueError, match="IW_ACME_API_KEY: set but blank"):
        Runtime(Settings(), registry)


def test_blank_tokens_turn_their_api_off_and_blank_keys_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IW_ADMIN_TOKEN", "")
    monkeypatch.setenv("IW_SERVICE_TOKEN", "  ")
    settings = Settings()
    assert settings.admin_token is None and settings.service_token is None

    monkeypatch.setenv("IW_SECRET_KEYS", " , ")
    with pytest.raises(ValidationError, match="IW_SECRET_KEYS"):
        Settings()
    monkeypatch.setenv("IW_SECRET_KEYS", OWN_KEYS["IW_SECRET_KEYS"])
    monkeypatch.setenv("IW_SIGNING_KEY", " ")
    with pytest.raises(ValidationError, match="IW_SIGNING_KEY"):
        Settings()


def test_development_keys_keep_the_service_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IW_SECRET_KEYS", raising=False)
    monkeypatch.delenv("IW_SIGNING_KEY", raising=False)
    monkeypatch.delenv("IW_HTTP_HOST", raising=False)
    dev = Settings()
    assert dev.development_keys == ["IW_SECRET_KEYS", "IW_SIGNING_KEY"]
    assert dev.listen_host() == "127.0.0.1"

    monkeypatch.setenv("IW_HTTP_HOST", "0.0.0.0")
    with pytest.raises(InsecureConfiguration, match="IW_SECRET_KEYS and IW_SIGNING_KEY"):
        Settings().listen_host()
    monkeypatch.setenv("IW_HTTP_HOST", "::1")
    assert Settings().listen_host() == "::1"

    for name, value in OWN_KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IW_HTTP_HOST")
    assert Settings().development_keys == []
    assert Settings().listen_host() == "0.0.0.0"
    monkeypatch.setenv("IW_SIGNING_KEY", DEV_SIGNING_KEY)  # one development key is enough to refuse
    monkeypatch.setenv("IW_HTTP_HOST", "10.1.2.3")
    with pytest.raises(InsecureConfiguration, match="IW_SIGNING_KEY"):
        Settings().listen_host()


def test_a_token_issued_for_longer_than_the_maximum_now_in_force_is_refused() -> None:
    key = OWN_KEYS["IW_SIGNING_KEY"]
    day = signing.sign(key, "tool", {"team": "t"}, 86400)
    assert signing.verify(key, "tool", day, max_ttl=86400) == {"team": "t"}
    with pytest.raises(signing.InvalidSignedToken, match="longer than the 3600 s now allowed"):
        signing.verify(key, "tool", day, max_ttl=3600)
