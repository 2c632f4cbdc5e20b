"""Runtime pieces that need no server."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from cryptography.fernet import Fernet
from pydantic import BaseModel, SecretStr, ValidationError

from schemas.envelope import Envelope, InvalidEnvelope, encode_webhook
from worker.core import signing
from worker.core.redact import redact, register_secret
from worker.core.secrets import SecretBox, SecretDecryptError
from worker.core.settings import Settings
from worker.platform.install import InstallError, _retrying
from worker.runtime.failures import classify
from worker.runtime.retry import retry_delay
from worker.sdk import (
    Action,
    Handler,
    Integration,
    ProviderError,
    Registry,
    RegistryError,
    TransientError,
    call,
    classify_response,
    parse_retry_after,
)


class SmtpLike(BaseModel):
    host: str
    password: SecretStr
    nested: dict[str, Any] = {}


def test_secrets_are_encrypted_in_stored_configs_and_rotate_to_a_new_key() -> None:
    old = Fernet.generate_key().decode()
    box = SecretBox([old])
    stored = box.seal(SmtpLike(host="smtp.example.com", password=SecretStr("hunter2-password")))
    assert stored["host"] == "smtp.example.com"
    assert stored["password"].startswith("enc:v1:") and "hunter2" not in stored["password"]
    assert SmtpLike.model_validate(box.open(stored)).password.get_secret_value() == "hunter2-password"

    new = Fernet.generate_key().decode()
    rotating = SecretBox([new, old])
    resealed = rotating.reseal(stored)
    assert SecretBox([new]).open(resealed)["password"] == "hunter2-password"
    with pytest.raises(SecretDecryptError, match="no configured key"):
        SecretBox([new]).open(stored)


def test_a_bad_key_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="not a valid Fernet key"):
        SecretBox(["short"])


def test_signed_tokens_refuse_forgery_alteration_expiry_and_other_purposes() -> None:
    token = signing.sign("signing-key-one-0123456789abcdef0123", "link", {"user": "U1"}, ttl_seconds=60)
    assert signing.verify("signing-key-one-0123456789abcdef0123", "link", token) == {"user": "U1"}
    with pytest.raises(signing.InvalidSignedToken, match="invalid"):
        signing.verify("signing-key-two-0123456789abcdef0123", "link", token)
    header, body, sig = token.split(".")
    with pytest.raises(signing.InvalidSignedToken, match="invalid"):
        signing.verify("signing-key-one-0123456789abcdef0123", "link", f"{header}.{body}x.{sig}")
    with pytest.raises(signing.InvalidSignedToken, match="another purpose"):
        signing.verify("signing-key-one-0123456789abcdef0123", "oauth:slack", token)
    expired = signing.sign("signing-key-one-0123456789abcdef0123", "link", {"user": "U1"}, ttl_seconds=-1)
    with pytest.raises(signing.InvalidSignedToken, match="expired"):
        signing.verify("signing-key-one-0123456789abcdef0123", "link", expired)


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer ghs_16C7e42F292c6912E7710c838347Ae178B4a",
        "token xoxb-123456789-abcdefghijkl",
        "GET https://api.example.com/x?access_token=ya29.a0AfH6SMBxxxxxxxxxxx&page=2",
        "amqp://guest:s3cr3tpass@rabbit:5672/",
        "stored enc:v1:gAAAAABlZxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ],
)
def test_redaction_masks_token_shapes(text: str) -> None:
    masked = redact(text)
    assert "[redacted]" in masked
    for secret in ("ghs_16C7", "xoxb-1234", "ya29.a0", "s3cr3tpass", "gAAAAABlZ"):
        assert secret not in masked


def test_redaction_masks_known_secret_values() -> None:
    register_secret("my-very-own-webhook-secret")
    assert redact("failed with my-very-own-webhook-secret inside") == "failed with [redacted] inside"


def test_retry_after_parsing() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(1_000_030))
    assert parse_retry_after(http_date, now=1_000_000) == pytest.approx(30, abs=1)


def test_failures_are_classified() -> None:
    def status(code: int, **headers: str) -> httpx.HTTPStatusError:
        request = httpx.Request("POST", "https://api.example.com/x?token=abc12345678")
        response = httpx.Response(code, headers=headers, request=request)
        return httpx.HTTPStatusError("x", request=request, response=response)

    assert classify(status(503)).kind == "transient"
    assert classify(status(429, **{"retry-after": "7"})).retry_after == 7.0
    assert classify(status(404)).kind == "permanent"
    assert "abc12345678" not in classify(status(404)).reason
    assert classify(httpx.ConnectError("refused")).kind == "transient"
    assert classify(TimeoutError()).kind == "transient"
    assert classify(KeyError("x")).kind == "permanent"
    try:
        Envelope.model_validate({"id": ""})
    except ValidationError as exc:
        assert classify(exc).kind == "permanent" and "invalid input" in classify(exc).reason


@respx.mock
async def test_outbound_calls_retry_transient_failures_and_honour_long_retry_after() -> None:
    route = respx.post("https://api.example.com/x").mock(
        side_effect=[httpx.Response(502), httpx.Response(429, headers={"retry-after": "0"}), httpx.Response(201)]
    )
    async with httpx.AsyncClient() as client:
        assert (await call(client, "POST", "https://api.example.com/x")).status_code == 201
        assert route.call_count == 3

        respx.post("https://api.example.com/slow").mock(
            return_value=httpx.Response(429, headers={"retry-after": "120"})
        )
        with pytest.raises(TransientError) as transient:
            await call(client, "POST", "https://api.example.com/slow")
        assert transient.value.retry_after == 120.0  # handed to the delayed retry queue, not slept here

        respx.post("https://api.example.com/bad").mock(return_value=httpx.Response(422, json={"message": "nope"}))
        with pytest.raises(ProviderError) as refused:
            await call(client, "POST", "https://api.example.com/bad")
        assert refused.value.status == 422 and refused.value.body == {"message": "nope"}


def test_retry_levels_grow_and_honour_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(retry_delays=[2, 10, 60, 300])
    delays = settings.retry_delays
    assert [retry_delay(delays, a, None) for a in (1, 2, 3, 4, 5)] == [2, 10, 60, 300, 300]
    assert retry_delay(delays, 1, 30) == 60
    assert retry_delay(delays, 1, 10_000) == 300
    assert settings.max_attempts == 5


def test_settings_refuse_development_keys_in_production() -> None:
    with pytest.raises(RuntimeError, match="IW_SECRET_KEYS"):
        Settings(env="production").check_production()
    Settings(env="production", secret_keys=Fernet.generate_key().decode(), signing_key="x" * 32).check_production()


def test_envelope_contract() -> None:
    envelope = Envelope(id="github:abc", type="google-calendar", kind="command", name="sync_task")
    assert envelope.routing_key == "google-calendar.command.sync_task"
    assert envelope.next_attempt().attempt == 1
    for bad in ({"type": "Git Hub"}, {"kind": "query"}, {"name": "a.b"}, {"id": ""}):
        with pytest.raises(ValidationError):
            Envelope.model_validate({"id": "x", "type": "github", "kind": "webhook", "name": "push", **bad})


async def _noop(ctx: Any) -> None:
    return None


async def _act(ctx: Any, value: Any) -> Any:
    return value


def test_the_registry_refuses_a_broken_integration_at_start() -> None:
    class In(BaseModel):
        x: int

    broken = [
        Integration(type="dup", name="A", description="a"),
        Integration(type="dup", name="B", description="b"),
        Integration(
            type="Bad Type",
            name="C",
            description="c",
            handlers=[Handler("query", "x", _noop)],  # type: ignore[arg-type]
            actions=[Action("send", "s", In, In, _act), Action("send", "s", In, In, _act)],
        ),
    ]
    with pytest.raises(RegistryError) as error:
        Registry(broken)
    message = str(error.value)
    assert "type 'dup' is declared twice" in message
    assert "type must match" in message
    assert "handler kind 'query'" in message
    assert "action 'send' is declared twice" in message


def test_the_ingress_fast_encoding_is_a_valid_envelope() -> None:
    body = encode_webhook(
        id="github:abc",
        type_="github",
        name="pull_request",
        payload={"action": "opened", "n": [1, 2]},
        headers={"x-github-event": "pull_request"},
        external_team_id="42",
    )
    envelope = Envelope.model_validate_json(body)
    expected = Envelope(
        id="github:abc",
        type="github",
        kind="webhook",
        name="pull_request",
        external_team_id="42",
        headers={"x-github-event": "pull_request"},
        payload={"action": "opened", "n": [1, 2]},
        created_at=envelope.created_at,
        trace_id=envelope.trace_id,
    )
    assert envelope == expected
    for bad in ({"name": "pull request"}, {"name": ""}, {"id": "x" * 513}, {"type_": "Git Hub"}):
        with pytest.raises(InvalidEnvelope):
            encode_webhook(**{"id": "a", "type_": "github", "name": "push", "payload": {}, "headers": {}, **bad})  # type: ignore[arg-type]


async def test_install_transactions_are_retried_when_postgresql_breaks_a_deadlock() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        return "done"

    assert await _retrying(flaky) == "done" and calls == 3

    async def always() -> str:
        raise asyncpg.exceptions.SerializationError("could not serialize access")

    with pytest.raises(InstallError) as refused:
        await _retrying(always, attempts=2)
    assert refused.value.status == 503


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"message": "Validation Failed", "errors": []}, "Validation Failed"),  # GitHub, Mattermost
        ({"error": {"code": 400, "message": "Invalid start time."}}, "Invalid start time."),  # Google
        ({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, "Token has been"),
        ({"error": "invalid_grant"}, "invalid_grant"),
        ({"message": "bad token ghp_abcdefghijklmnopqrstuvwxyz0123"}, "bad token [redacted]"),
    ],
)
def test_a_provider_refusal_says_why_in_the_providers_words(body: dict[str, Any], said: str) -> None:
    request = httpx.Request("POST", "https://api.example.com/v1/things?access_token=secret-value")
    failure = classify_response(httpx.Response(400, json=body, request=request))
    assert failure is not None and failure.kind == "permanent"
    assert failure.reason.startswith(f"POST https://api.example.com/v1/things -> HTTP 400: {said}")
    assert "secret-value" not in failure.reason and "ghp_abc" not in failure.reason
