"""OAuth tokens at runtime: stored encrypted, refreshed once however many ask, after a 401 too,
rotated refresh tokens kept, and a dead refresh token marks the link and stops its work."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from integrations.gmail.config import GmailSettings
from integrations.google_common.oauth import GoogleRefresher
from tests.conftest import TEAM, Results, eventually
from tests.fakes.google import FakeGoogleState
from tests.google.conftest import ANN, command, install_type, link_user, parked, push_request, watched
from worker.core.settings import Settings
from worker.platform import attach
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker
from worker.sdk import LinkNeedsReconnect

ROOT = Path(__file__).resolve().parents[2]


def refresher(runtime: Runtime) -> GoogleRefresher:
    settings = runtime.integration_settings["gmail"]
    assert isinstance(settings, GmailSettings)
    return GoogleRefresher(settings)


async def expire(runtime: Runtime, link_id: str) -> None:
    await runtime.pool.execute(
        "UPDATE integration_user_link SET token_expires_at = now() - interval '1 minute' WHERE id = $1", link_id
    )


async def test_tokens_are_stored_encrypted(runtime: Runtime, google: FakeGoogleState) -> None:
    gmail = await install_type(runtime, "gmail")
    link_id, access, refresh = await link_user(runtime, google, gmail)

    row = await runtime.pool.fetchrow(
        "SELECT access_token, refresh_token FROM integration_user_link WHERE id = $1", link_id
    )

    assert row["access_token"].startswith("enc:v1:") and access not in row["access_token"]
    assert row["refresh_token"].startswith("enc:v1:") and refresh not in row["refresh_token"]
    assert await runtime.tokens.access_token(link_id, refresher(runtime)) == access
    assert google.refresh_requests == 0  # valid for an hour: no refresh


async def test_concurrent_calls_with_an_expired_token_refresh_once(runtime: Runtime, google: FakeGoogleState) -> None:
    gmail = await install_type(runtime, "gmail")
    link_id, old, _ = await link_user(runtime, google, gmail)
    await expire(runtime, link_id)
    google.refresh_delay = 0.3  # a slow token endpoint widens the race

    tokens = await asyncio.gather(*(runtime.tokens.access_token(link_id, refresher(runtime)) for _ in range(20)))

    assert google.refresh_requests == 1
    assert len(set(tokens)) == 1 and tokens[0] != old
    assert google.access_tokens[tokens[0]][0] == ANN
    expires = await runtime.pool.fetchval("SELECT token_expires_at FROM integration_user_link WHERE id = $1", link_id)
    assert expires.timestamp() > time.time() + 3000


async def test_two_runtimes_refresh_once(runtime: Runtime, settings: Settings, google: FakeGoogleState) -> None:
    """Two process-like runtimes (own pools, own in-process locks) share only PostgreSQL."""
    gmail = await install_type(runtime, "gmail")
    link_id, _, _ = await link_user(runtime, google, gmail)
    await expire(runtime, link_id)
    google.refresh_delay = 0.3
    other = attach(Runtime(settings, runtime.registry))
    await other.start(migrate=False, broker=False)
    try:
        tokens = await asyncio.gather(
            *(rt.tokens.access_token(link_id, refresher(runtime)) for rt in (runtime, other) for _ in range(10))
        )
    finally:
        await other.stop()

    assert google.refresh_requests == 1
    assert len(set(tokens)) == 1


async def test_two_processes_refresh_once(runtime: Runtime, env: dict[str, str], google: FakeGoogleState) -> None:
    gmail = await install_type(runtime, "gmail")
    link_id, _, _ = await link_user(runtime, google, gmail)
    await expire(runtime, link_id)
    google.refresh_delay = 0.5
    script = ROOT / "tests" / "google" / "refresh_race.py"
    environment = {**os.environ, **env, "PYTHONPATH": str(ROOT)}

    start_at = str(time.time() + 2)  # both ask at the same moment, while the refresh takes 0.5 s
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), link_id, start_at], env=environment, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in processes]

    assert [p.returncode for p in processes] == [0, 0]
    assert google.refresh_requests == 1
    lines = {line for out in outputs for line in out.split()}
    assert len(lines) == 1  # both processes, 5 calls each, got the same fresh token


async def test_a_401_refreshes_and_retries_once(runtime: Runtime, google: FakeGoogleState, worker: Worker) -> None:
    gmail = await install_type(runtime, "gmail")
    link_id, access, _ = await link_user(runtime, google, gmail)
    await watched(runtime, google, gmail, link_id)
    google.access_tokens.pop(access)  # Google no longer takes it, though it has not expired

    await command(runtime, "gmail", "renew_watch", {"link_id": link_id}, integration_id=gmail.id)

    await eventually(lambda: google.mailbox(ANN).watch_calls == 1)
    assert google.refresh_requests == 1


async def test_a_rotated_refresh_token_is_saved(runtime: Runtime, google: FakeGoogleState) -> None:
    gmail = await install_type(runtime, "gmail")
    link_id, _, first_refresh = await link_user(runtime, google, gmail)
    await expire(runtime, link_id)
    google.rotate_refresh_tokens = True

    token = await runtime.tokens.access_token(link_id, refresher(runtime))

    stored = await runtime.pool.fetchval("SELECT refresh_token FROM integration_user_link WHERE id = $1", link_id)
    current = runtime.secrets.decrypt(stored)
    assert current != first_refresh and current in google.refresh_tokens
    # The rotated one works next time (a 401 forces the refresh); the old one is dead at Google.
    await runtime.tokens.refresh(link_id, refresher(runtime), failed_token=token)
    assert google.refresh_requests == 2
    status = await runtime.pool.fetchval("SELECT status FROM integration_user_link WHERE id = $1", link_id)
    assert status == "active"


async def test_a_transient_token_endpoint_failure_keeps_a_still_valid_token(
    runtime: Runtime, google: FakeGoogleState
) -> None:
    gmail = await install_type(runtime, "gmail")
    link_id, access, _ = await link_user(runtime, google, gmail, expires_in=120)  # inside the refresh margin
    google.fail["token"] = [503, 503, 503]

    assert await runtime.tokens.access_token(link_id, refresher(runtime)) == access


async def test_invalid_grant_marks_the_link_and_stops_its_work(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, results: Results
) -> None:
    gmail = await install_type(runtime, "gmail")
    link_id, _, refresh = await link_user(runtime, google, gmail)
    await watched(runtime, google, gmail, link_id)
    await expire(runtime, link_id)
    google.revoked.add(refresh)  # the user revoked access

    first = await command(runtime, "gmail", "renew_watch", {"link_id": link_id}, integration_id=gmail.id)

    [event] = await results.wait_for("integration.link_needs_reconnect")
    assert event["data"] == {
        "link_id": link_id,
        "integration_id": gmail.id,
        "type": "gmail",
        "user_id": "user-ann",
        "external_user_id": ANN,
        "reason": "the provider refused the refresh token (invalid_grant: Token has been expired or revoked.)",
    }
    assert event["team_id"] == TEAM and event["causation_id"] == first
    row = await runtime.pool.fetchrow(
        "SELECT status, access_token, refresh_token FROM integration_user_link WHERE id = $1", link_id
    )
    assert row["status"] == "needs_reconnect" and row["access_token"] is None and row["refresh_token"] is None
    [message] = await eventually(lambda: parked(runtime))
    assert message["envelope"]["id"] == first
    assert message["headers"]["x-attempts"] == 1  # permanent: parked at once, not retried
    assert "needs reconnecting" in message["headers"]["x-error"]
    assert refresh not in message["headers"]["x-error"]

    # Later work for the link stops without asking Google again.
    try:
        await runtime.tokens.access_token(link_id, refresher(runtime))
    except LinkNeedsReconnect:
        pass
    else:
        raise AssertionError("a link that needs reconnecting handed out a token")
    assert google.refresh_requests == 1
    log = await runtime.pool.fetchrow(
        "SELECT level, message FROM integration_logs"
        " WHERE key = 'link_needs_reconnect' AND integration_user_link_id = $1",
        link_id,
    )
    assert log["level"] == "warning" and ANN in log["message"]
    assert len(results.of("integration.link_needs_reconnect")) == 1


async def test_a_mailbox_that_needs_reconnecting_takes_no_pushes(
    runtime: Runtime, google: FakeGoogleState, ingress: httpx.AsyncClient
) -> None:
    gmail = await install_type(runtime, "gmail")
    link_id, _, _ = await link_user(runtime, google, gmail)
    await watched(runtime, google, gmail, link_id)
    await runtime.pool.execute("UPDATE integration_user_link SET status = 'needs_reconnect' WHERE id = $1", link_id)

    body, headers = push_request(google)
    response = await ingress.post("/webhooks/gmail", content=body, headers=headers)

    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert google.refresh_requests == 0


async def test_no_token_state_is_shared_between_users(runtime: Runtime, google: FakeGoogleState) -> None:
    """Two users of one integration at once: each call carries that user's own token."""
    gmail = await install_type(runtime, "gmail")
    ann, _, _ = await link_user(runtime, google, gmail)
    bob, _, _ = await link_user(runtime, google, gmail, address="bob@acme.example", user_id="user-bob")
    await expire(runtime, ann)
    await expire(runtime, bob)
    google.refresh_delay = 0.2

    tokens = await asyncio.gather(
        *(runtime.tokens.access_token(link, refresher(runtime)) for link in (ann, bob, ann, bob))
    )

    assert google.access_tokens[tokens[0]][0] == ANN and google.access_tokens[tokens[2]][0] == ANN
    assert google.access_tokens[tokens[1]][0] == "bob@acme.example" == google.access_tokens[tokens[3]][0]
    assert google.refresh_requests == 2
