"""Slack end to end: signed Events API requests in, association links, linked messages to the agent,
replies through the (fake) Web API."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from pydantic import SecretStr

from integrations.slack import tokens
from schemas.envelope import Envelope
from tests.chat.conftest import (
    assert_tampered_tokens_link_nobody,
    confirm_link,
    link_count,
    link_directly,
    link_token_in,
    mention,
    parked,
    post_slack,
    settled,
    slack_event,
    tampered_tokens,
)
from tests.conftest import TEAM, Results, eventually, queue_depth
from tests.fakes import slack as fake_slack
from tests.fakes.slack import FakeSlackState
from tests.helpers import publish
from worker.core import signing
from worker.core.logging import get_logger
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker
from worker.sdk import association


async def test_unlinked_person_gets_one_association_link_then_reaches_the_agent_once_linked(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    slack: FakeSlackState,
    slack_integration: object,
    env: dict[str, str],
) -> None:
    slack.users["U0ALICE"] = "alice"
    first = mention("what is due today?", ts="1700000000.000100")

    response = await post_slack(ingress, first)

    assert response.status_code == 202
    replies = await eventually(lambda: slack.of("chat.postEphemeral"))
    assert len(replies) == 1
    link = replies[0]
    assert link["channel"] == "C0GENERAL" and link["thread_ts"] == "1700000000.000100" and link["user"] == "U0ALICE"
    assert "https://app.example.com/integrations/associate?token=" in link["text"]
    assert "alice" in link["text"]
    assert slack.of("chat.postMessage") == []  # nothing else, and nothing public
    assert results.of("message.received") == []

    confirmed = await confirm_link(ingress, env, link_token_in(link["text"]), "user-alice")

    assert confirmed.status_code == 201, confirmed.text
    row = await runtime.pool.fetchrow("SELECT * FROM integration_user_link")
    assert (row["user_id"], row["external_user_id"], row["integration_type"], row["team_id"]) == (
        "user-alice",
        "U0ALICE",
        "slack",
        TEAM,
    )
    linked = await results.wait_for("integration.user_linked")
    assert linked[0]["data"]["external_user_name"] == "alice"
    await eventually(lambda: len(slack.of("chat.postEphemeral")) == 2)  # "your account is linked"

    second = mention("what is due today?", ts="1700000000.000200", thread_ts="1700000000.000100")
    assert (await post_slack(ingress, second)).status_code == 202

    received = (await results.wait_for("message.received"))[0]
    data = received["data"]
    assert data["conversation_id"] == "slack-C0GENERAL-1700000000.000100"
    assert data["text"] == "what is due today?"
    assert data["user_id"] == "user-alice" and data["external_user_id"] == "U0ALICE"
    assert received["team_id"] == TEAM
    assert data["reply"]["routing_key"] == "slack.command.post_message"
    assert data["reply"]["input"] == {"channel": "C0GENERAL", "thread_ts": "1700000000.000100"}
    reactions = await eventually(lambda: slack.of("reactions.add"))
    assert reactions == [{"channel": "C0GENERAL", "timestamp": "1700000000.000200", "name": "eyes"}]

    # The agent answers through the reply target it was given.
    reply = data["reply"]
    answer = await publish(
        runtime,
        "slack",
        "command",
        reply["action"],
        {**reply["input"], reply["text_field"]: "Two tasks are due today."},
        integration_id=reply["integration_id"],
    )
    posted = await eventually(lambda: slack.of("chat.postMessage"))
    assert posted == [
        {
            "channel": "C0GENERAL",
            "text": "Two tasks are due today.",
            "thread_ts": "1700000000.000100",
            "metadata": {"event_type": "integration_worker_message", "event_payload": {"command_id": answer.id}},
        }
    ]
    assert await link_count(runtime) == 1


async def test_a_link_token_links_once_even_after_its_link_is_removed(
    runtime: Runtime, ingress: httpx.AsyncClient, slack_integration: Any, env: dict[str, str]
) -> None:
    token = association.mint(
        runtime.settings,
        association.LinkClaim(slack_integration.id, TEAM, "slack", "U0ALICE", "alice"),
    )
    assert (await confirm_link(ingress, env, token, "user-alice")).status_code == 201
    assert (await confirm_link(ingress, env, token, "user-alice")).status_code == 200  # changes nothing
    await runtime.pool.execute("DELETE FROM integration_user_link")  # the link is removed (unlinked)

    reused = await confirm_link(ingress, env, token, "user-mallory")

    assert reused.status_code == 409 and "already used" in reused.json()["error"]
    assert await link_count(runtime) == 0


async def test_forged_altered_expired_or_foreign_link_tokens_link_nobody(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    slack: FakeSlackState,
    slack_integration: object,
    env: dict[str, str],
) -> None:
    await post_slack(ingress, mention("hello"))
    token = link_token_in((await eventually(lambda: slack.of("chat.postEphemeral")))[0]["text"])
    await assert_tampered_tokens_link_nobody(ingress, runtime, env, token)
    expired = tampered_tokens(token, env["IW_SIGNING_KEY"])["expired"]
    assert "expired" in (await confirm_link(ingress, env, expired, "user-mallory")).json()["error"]
    assert (await confirm_link(ingress, env, token, "user-mallory", team_id="team-2")).status_code == 403
    no_admin = await ingress.post("/links", json={"token": token, "user_id": "user-mallory", "team_id": TEAM})
    assert no_admin.status_code == 401
    assert await link_count(runtime) == 0

    assert (await confirm_link(ingress, env, token, "user-alice")).status_code == 201
    again = await confirm_link(ingress, env, token, "user-alice")
    assert again.status_code == 200 and again.json()["created"] is False
    assert (await confirm_link(ingress, env, token, "user-mallory")).status_code == 409  # first confirmation wins
    assert await runtime.pool.fetchval("SELECT user_id FROM integration_user_link") == "user-alice"
    assert await link_count(runtime) == 1


async def test_link_user_command_links_with_a_valid_token_and_parks_a_forged_one(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    slack: FakeSlackState,
    slack_integration: object,
    env: dict[str, str],
) -> None:
    await post_slack(ingress, mention("hello"))
    token = link_token_in((await eventually(lambda: slack.of("chat.postEphemeral")))[0]["text"])
    forged = signing.sign("a-key-the-attacker-chose-for-this-test", "link", {"iid": "x", "sub": "U0ALICE"}, 3600)

    bad = await publish(
        runtime, "integration", "command", "link_user", {"token": forged, "user_id": "u-m"}, team_id=TEAM
    )
    await publish(
        runtime, "integration", "command", "link_user", {"token": token, "user_id": "user-alice"}, team_id=TEAM
    )

    linked = await results.wait_for("integration.user_linked")
    assert linked[0]["data"]["user_id"] == "user-alice" and linked[0]["data"]["integration_type"] == "slack"
    parked_now = await eventually(lambda: parked(runtime))
    assert [p.id for p in parked_now] == [bad.id]
    assert "link token refused: token is invalid" in parked_now[0].error
    assert await link_count(runtime) == 1


async def test_replayed_or_badly_signed_requests_are_refused_and_nothing_is_enqueued(
    runtime: Runtime, ingress: httpx.AsyncClient, slack_integration: object
) -> None:
    now = int(time.time())
    for timestamp in (now - 301, now + 301):
        replay = await post_slack(ingress, mention("hello"), timestamp=timestamp)
        assert replay.status_code == 401
        assert "window" in replay.json()["error"]
    forged = await post_slack(ingress, mention("hello"), secret="not-the-signing-secret")
    assert forged.status_code == 401 and "Signature" in forged.json()["error"]
    unsigned = await ingress.post("/webhooks/slack", json=mention("hello"))
    assert unsigned.status_code == 401
    truncated = await ingress.post(
        "/webhooks/slack",
        content=b"{}",
        headers={"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": "v0=abc"},
    )
    assert truncated.status_code == 401  # a wrong-length signature is a 401, not a crash
    assert await queue_depth(runtime, runtime.topology.queues("slack")) == 0


async def test_slacks_retries_of_one_event_are_handled_once(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    slack: FakeSlackState,
    slack_integration: object,
) -> None:
    payload = mention("hello", event_id="Ev0RETRY")

    answers = [await post_slack(ingress, payload, retry=retry) for retry in (None, 1, 2, 3)]

    assert {a.status_code for a in answers} == {202}
    assert {a.json()["id"] for a in answers} == {"slack:Ev0RETRY"}
    await eventually(lambda: slack.of("chat.postEphemeral"))
    await settled(runtime, worker, "slack")
    assert len(slack.of("chat.postEphemeral")) == 1
    assert await runtime.pool.fetchval("SELECT count(*) FROM processed_events WHERE id = 'slack:Ev0RETRY'") == 1


async def test_url_verification_is_answered_with_its_challenge(runtime: Runtime, ingress: httpx.AsyncClient) -> None:
    response = await post_slack(
        ingress,
        {"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"},
    )

    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert await queue_depth(runtime, runtime.topology.queues("slack")) == 0


async def test_oauth_install_stores_the_workspace_with_its_bot_token_encrypted(
    runtime: Runtime,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    results: Results,
    slack: FakeSlackState,
    env: dict[str, str],
) -> None:
    admin = {"Authorization": f"Bearer {env['IW_ADMIN_TOKEN']}"}
    start = await ingress.get("/oauth/slack/start", params={"team_id": TEAM, "user_id": "user-admin"}, headers=admin)
    assert start.status_code == 200, start.text
    followed = await browser.get(start.json()["authorize_url"])  # the admin's browser, on to Slack
    assert followed.status_code == 303
    authorize = httpx.URL(followed.headers["location"])
    assert str(authorize).startswith(env["IW_SLACK_AUTHORIZE_URL"])
    assert authorize.params["client_id"] == fake_slack.CLIENT_ID
    assert {"app_mentions:read", "files:read", "chat:write"} <= set(authorize.params["scope"].split(","))
    assert authorize.params["redirect_uri"] == "https://iw.example.com/oauth/slack/callback"
    assert authorize.params["code_challenge_method"] == "S256"
    slack.expected_challenge = authorize.params["code_challenge"]
    state = authorize.params["state"]

    tampered = await browser.get("/oauth/slack/callback", params={"code": fake_slack.GOOD_CODE, "state": state[:-2]})
    assert tampered.status_code == 400
    refused = await browser.get("/oauth/slack/callback", params={"code": "stolen-code", "state": state})
    assert refused.status_code == 400 and "invalid_code" in refused.json()["reason"]
    done = await browser.get("/oauth/slack/callback", params={"code": fake_slack.GOOD_CODE, "state": state})

    assert done.status_code == 200, done.text
    assert done.json()["status"] == "connected"
    row = await runtime.pool.fetchrow("SELECT * FROM integrations WHERE type = 'slack'")
    assert row["id"] == done.json()["integration_id"]
    assert (row["team_id"], row["external_team_id"], row["status"]) == (TEAM, fake_slack.TEAM_ID, "active")
    stored = row["config"]
    assert stored["accessToken"].startswith("enc:v1:")  # encrypted at rest
    assert stored["botUserId"] == fake_slack.BOT_USER_ID and "app_mentions:read" in stored["scopes"]
    bot_token = runtime.secrets.decrypt(stored["accessToken"])
    assert bot_token in slack.bot_tokens
    exchanges = slack.of("oauth.v2.access")
    assert exchanges[-1]["code"] == fake_slack.GOOD_CODE
    assert exchanges[-1]["redirect_uri"] == "https://iw.example.com/oauth/slack/callback"
    again = await browser.get("/oauth/slack/callback", params={"code": fake_slack.GOOD_CODE, "state": state})
    assert again.status_code == 400 and "already completed" in again.json()["error"]
    installed = await results.wait_for("integration.installed")
    assert installed[0]["data"]["source"] == "oauth" and installed[0]["data"]["user_id"] == "user-admin"


async def test_rotated_bot_tokens_are_refreshed_before_expiry_and_stored_at_once(
    runtime: Runtime, worker: Worker, slack: FakeSlackState
) -> None:
    old = slack.new_bot_token()
    slack.rotate = True
    slack.refresh_tokens["xoxe-first"] = fake_slack.TEAM_ID
    record, _ = await install(
        runtime,
        InstallRequest(
            "slack",
            TEAM,
            {
                "teamId": fake_slack.TEAM_ID,
                "accessToken": old,
                "botUserId": fake_slack.BOT_USER_ID,
                "refreshToken": "xoxe-first",
                "tokenExpiresAt": (datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
            },
        ),
    )

    await publish(
        runtime, "slack", "command", "post_message", {"channel": "C0", "text": "hi"}, integration_id=record.id
    )

    await eventually(lambda: slack.of("chat.postMessage"))
    refresh = slack.of("oauth.v2.access")
    assert refresh == [{"grant_type": "refresh_token", "refresh_token": "xoxe-first"}]
    used = slack.tokens_used("chat.postMessage")[0]
    assert used != old and used in slack.bot_tokens
    stored = runtime.secrets.open((await runtime.pool.fetchrow("SELECT config FROM integrations"))["config"])
    assert stored["accessToken"] == used
    assert stored["refreshToken"].startswith("xoxe-") and stored["refreshToken"] != "xoxe-first"
    assert datetime.fromisoformat(stored["tokenExpiresAt"]) > datetime.now(UTC) + timedelta(hours=11)


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ({"type": "app_uninstalled"}, "uninstalled"),
        ({"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [fake_slack.BOT_USER_ID]}}, "revoked"),
    ],
)
async def test_an_uninstalled_or_revoked_app_makes_later_events_logged_not_retried(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    slack: FakeSlackState,
    slack_integration: Any,
    event: dict[str, Any],
    status: str,
) -> None:
    assert (await post_slack(ingress, slack_event(event))).status_code == 202
    changed = await results.wait_for("integration.status_changed")
    assert changed[0]["data"]["status"] == status and changed[0]["data"]["previous_status"] == "active"
    assert await runtime.pool.fetchval("SELECT status FROM integrations WHERE id = $1", slack_integration.id) == status

    assert (await post_slack(ingress, mention("anyone there?"))).status_code == 202

    skipped = await eventually(
        lambda: runtime.pool.fetchval("SELECT message FROM integration_logs WHERE key = 'skipped_inactive'")
    )
    assert status in skipped
    await settled(runtime, worker, "slack")
    assert slack.of("chat.postEphemeral") == [] and slack.of("chat.postMessage") == []
    assert await parked(runtime) == []


async def test_replies_honour_rate_limits_and_slacks_transient_errors_and_park_permanent_ones(
    runtime: Runtime, worker: Worker, slack: FakeSlackState, slack_integration: Any
) -> None:
    slack.inject["chat.postMessage"] = [
        (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}),
        (200, {"ok": False, "error": "internal_error"}, {}),
    ]
    started = time.monotonic()
    delivered = await publish(
        runtime,
        "slack",
        "command",
        "post_message",
        {"channel": "C0", "text": "hi"},
        integration_id=slack_integration.id,
    )
    await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", delivered.id))
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert len(slack.of("chat.postMessage")) == 3  # 429, internal_error, then posted

    slack.inject["chat.postMessage"] = [(200, {"ok": False, "error": "channel_not_found"}, {})]
    refused = await publish(
        runtime,
        "slack",
        "command",
        "post_message",
        {"channel": "C9", "text": "hi"},
        integration_id=slack_integration.id,
    )
    parked_now = await eventually(lambda: parked(runtime))
    assert [p.id for p in parked_now] == [refused.id]
    assert "channel_not_found" in parked_now[0].error and parked_now[0].error_kind == "permanent"
    assert len(slack.of("chat.postMessage")) == 4  # tried once, not retried


async def test_files_reach_the_agent_by_reference_and_are_fetched_with_the_bot_token(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    slack: FakeSlackState,
    slack_integration: Any,
    fake_slack_server: tuple[FakeSlackState, str],
) -> None:
    await link_directly(runtime, slack_integration, "U0ALICE", "user-alice")
    picture = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    slack.files["report.png"] = picture
    url = f"{fake_slack_server[1]}/files-pri/report.png"
    files = [{"id": "F1", "name": "report.png", "mimetype": "image/png", "size": len(picture), "url_private": url}]
    evil = {"id": "F2", "name": "x.png", "mimetype": "image/png", "url_private": "https://attacker.example/x.png"}

    await post_slack(ingress, mention("look at this", files=[*files, evil]))

    data = (await results.wait_for("message.received"))[0]["data"]
    first, second = data["attachments"]
    assert (first["kind"], first["name"], first["mime_type"], first["size"]) == (
        "image",
        "report.png",
        "image/png",
        1032,
    )
    assert first["transcribe"] is False
    assert first["url"].startswith("https://iw.example.com/attachments/")
    fetched = await ingress.get(first["url"].removeprefix("https://iw.example.com"))
    assert fetched.status_code == 200 and fetched.content == picture
    assert slack.file_requests == [f"Bearer {runtime.secrets.decrypt((await _config(runtime))['accessToken'])}"]
    elsewhere = await ingress.get(second["url"].removeprefix("https://iw.example.com"))
    assert elsewhere.status_code == 502  # the bot token never goes to another host
    assert len(slack.file_requests) == 1
    altered = first["url"].removeprefix("https://iw.example.com")[:-3] + "abc"
    assert (await ingress.get(altered)).status_code == 404


async def _config(runtime: Runtime) -> dict[str, Any]:
    return dict((await runtime.pool.fetchrow("SELECT config FROM integrations WHERE type = 'slack'"))["config"])


async def test_a_token_another_process_rotated_is_used_not_refreshed_again(
    runtime: Runtime, slack: FakeSlackState, env: dict[str, str]
) -> None:
    """Two processes refresh at once. The second either finds the first's token already stored
    (re-read after its lock), or is refused by Slack (the refresh token is spent) and then reads
    what the first stored; either way it uses that token instead of failing."""
    expiring = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    record, _ = await install(
        runtime,
        InstallRequest(
            "slack",
            TEAM,
            {
                "teamId": fake_slack.TEAM_ID,
                "accessToken": slack.new_bot_token(),
                "refreshToken": "xoxe-spent",
                "tokenExpiresAt": expiring,
            },
        ),
    )
    fresh = slack.new_bot_token()  # what the other process got from Slack and stores
    rotated = runtime.secrets.seal(
        record.config.model_copy(
            update={
                "access_token": SecretStr(fresh),
                "refresh_token": SecretStr("xoxe-next"),
                "token_expires_at": datetime.now(UTC) + timedelta(hours=12),
            }
        )
    )

    async def other_process_stores_its_token() -> None:
        conn = await asyncpg.connect(env["IW_DATABASE_URL"])
        try:
            await conn.execute(
                f'UPDATE "{env["IW_DATABASE_SCHEMA"]}".integrations SET config = $1::text::jsonb',
                orjson.dumps(rotated).decode(),
            )
        finally:
            await conn.close()

    slack.before_refresh = other_process_stores_its_token
    envelope = Envelope(id="test:rotation", type="slack", kind="command", name="post_message", team_id=TEAM)
    stale = runtime.context(envelope, record, log=get_logger())  # holds the config it was handed

    assert await tokens.bot_token(stale) == fresh  # refused by Slack, then read from the store
    assert slack.of("oauth.v2.access") == [{"grant_type": "refresh_token", "refresh_token": "xoxe-spent"}]

    again = runtime.context(envelope, record, log=get_logger())
    runtime.backend.cache("slack").delete(f"bot-token:{record.id}")
    assert await tokens.bot_token(again) == fresh  # found in the store: no second refresh
    assert len(slack.of("oauth.v2.access")) == 1


async def test_a_post_slack_took_before_its_answer_was_lost_is_not_posted_again(
    runtime: Runtime, worker: Worker, slack: FakeSlackState, slack_integration: Any
) -> None:
    slack.lose_answer.append("chat.postMessage")  # posted, then 503: the worker cannot know
    sent = await publish(
        runtime, "slack", "command", "post_message", {"channel": "C0", "text": "hi", "thread_ts": "1700000000.000100"},
        integration_id=slack_integration.id,
    )  # fmt: skip
    await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", sent.id))
    assert [m["text"] for m in slack.messages] == ["hi"]  # once, though the first answer was a 503
    assert len(slack.of("chat.postMessage")) == 1
    [lookup] = slack.of("conversations.replies")  # the retry looked in the thread first
    assert lookup["channel"] == "C0" and lookup["ts"] == "1700000000.000100"

    # without the history scopes the lookup cannot tell: the message is posted (rather than lost)
    slack.history_scope = False
    slack.lose_answer.append("chat.postMessage")
    again = await publish(
        runtime, "slack", "command", "post_message", {"channel": "C0", "text": "bye"},
        integration_id=slack_integration.id,
    )  # fmt: skip
    await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", again.id))
    assert [m["text"] for m in slack.messages] == ["hi", "bye", "bye"]
    assert len(slack.of("conversations.history")) == 1
