"""Mattermost end to end: the WebSocket listener (run by the services runner), outgoing webhooks and
slash commands at the ingress, association links, replies and notifications through the fake API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.chat.conftest import (
    MATTERMOST_WEBHOOK_TOKEN,
    assert_tampered_tokens_link_nobody,
    link_count,
    link_token_in,
    parked,
    publish,
    settled,
    soon,
)
from tests.conftest import TEAM, Results, eventually
from tests.fakes import mattermost as fake_mattermost
from tests.fakes.mattermost import FakeMattermostState, posted_event
from worker.consumer import Worker
from worker.install import InstallError, InstallRequest, install
from worker.runtime import Runtime
from worker.services import ServiceRunner

ALICE = "alice000000000000000000000"


async def test_install_checks_the_token_against_the_server_and_says_what_is_wrong(
    runtime: Runtime, mattermost: FakeMattermostState, fake_mattermost_server: tuple[FakeMattermostState, str]
) -> None:
    url = fake_mattermost_server[1]
    with pytest.raises(InstallError) as wrong_token:
        await install(runtime, InstallRequest("mattermost", TEAM, {"url": url, "token": "not-the-token"}))
    assert wrong_token.value.status == 422
    assert "refused the token (HTTP 401)" in wrong_token.value.message
    assert "not-the-token" not in wrong_token.value.message
    with pytest.raises(InstallError) as unreachable:
        await install(runtime, InstallRequest("mattermost", TEAM, {"url": "http://127.0.0.1:9", "token": "x"}))
    assert "cannot reach Mattermost at http://127.0.0.1:9" in unreachable.value.message
    with pytest.raises(InstallError) as invalid:
        await install(runtime, InstallRequest("mattermost", TEAM, {"url": "chat.example.com", "token": ""}))
    assert invalid.value.status == 400 and set(invalid.value.fields) == {"url", "token"}
    assert await runtime.pool.fetchval("SELECT count(*) FROM integrations") == 0

    record, _ = await install(
        runtime, InstallRequest("mattermost", TEAM, {"url": url + "/", "token": fake_mattermost.TOKEN})
    )
    assert record.config.url == url  # type: ignore[attr-defined]


async def test_a_direct_message_from_an_unlinked_person_gets_one_link_then_mentions_reach_the_agent(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    env: dict[str, str],
    results: Results,
    mattermost: FakeMattermostState,
    mattermost_integration: Any,
    services: ServiceRunner,
) -> None:
    await soon(lambda: mattermost.connected == 1)
    direct = posted_event(message="hi", channel_type="D", channel_id="dm00000000000000000000000a", post_id="p" * 26)

    mattermost.broadcast(direct)

    link = (await soon(lambda: mattermost.posts))[0]
    assert link["channel_id"] == "dm00000000000000000000000a" and link["root_id"] == "p" * 26
    assert "https://app.example.com/integrations/associate?token=" in link["message"] and "alice" in link["message"]
    await assert_tampered_tokens_link_nobody(ingress, runtime, env, link_token_in(link["message"]))
    await publish(
        runtime,
        "integration",
        "command",
        "link_user",
        {"token": link_token_in(link["message"]), "user_id": "user-alice"},
        team_id=TEAM,
    )
    await results.wait_for("integration.user_linked")
    await soon(lambda: len(mattermost.posts) == 2)  # "your account is linked", in the same thread
    assert mattermost.posts[1]["root_id"] == "p" * 26

    mention = posted_event(
        message="@planner what is due today?", mentions=[fake_mattermost.BOT_ID], post_id="q" * 26, root_id="r" * 26
    )
    mattermost.broadcast(mention)
    mattermost.broadcast(mention)  # a post seen twice (a reconnect) is handled once
    mattermost.broadcast(posted_event(message="lunch?", mentions=[]))  # not for the bot
    mattermost.broadcast(posted_event(message="@planner hi", user_id=fake_mattermost.BOT_ID, mentions=[]))  # its own

    received = (await results.wait_for("message.received"))[0]
    data = received["data"]
    assert data["conversation_id"] == f"mattermost-chan00000000000000000000aa-{'r' * 26}"
    assert data["text"] == "what is due today?"
    assert data["user_id"] == "user-alice" and data["external_user_id"] == ALICE
    assert data["reply"]["routing_key"] == "mattermost.command.post_message"
    assert data["reply"]["input"] == {"channel_id": "chan00000000000000000000aa", "root_id": "r" * 26}
    assert data["reply"]["text_field"] == "message"
    await soon(lambda: mattermost.reactions)
    assert mattermost.reactions == [{"user_id": fake_mattermost.BOT_ID, "post_id": "q" * 26, "emoji_name": "eyes"}]

    reply = data["reply"]
    await publish(
        runtime,
        "mattermost",
        "command",
        reply["action"],
        {**reply["input"], reply["text_field"]: "Two tasks."},
        integration_id=reply["integration_id"],
    )
    await soon(lambda: len(mattermost.posts) == 3)
    assert mattermost.posts[2] == {
        "id": mattermost.posts[2]["id"],
        "channel_id": "chan00000000000000000000aa",
        "message": "Two tasks.",
        "root_id": "r" * 26,
    }
    await settled(runtime, worker, "mattermost")
    assert len(results.of("message.received")) == 1
    assert await link_count(runtime) == 1


async def test_a_mention_in_a_channel_sends_the_link_by_direct_message_not_in_the_channel(
    runtime: Runtime,
    worker: Worker,
    mattermost: FakeMattermostState,
    mattermost_integration: Any,
    services: ServiceRunner,
) -> None:
    await soon(lambda: mattermost.connected == 1)

    mattermost.broadcast(posted_event(message="@planner hello", mentions=[fake_mattermost.BOT_ID]))

    post = (await soon(lambda: mattermost.posts))[0]
    assert mattermost.direct_channels == [sorted([ALICE, fake_mattermost.BOT_ID])]
    assert post["channel_id"].startswith("dm-") and "integrations/associate?token=" in post["message"]
    await settled(runtime, worker, "mattermost")
    assert len(mattermost.posts) == 1


async def test_outgoing_webhooks_and_slash_commands_need_the_shared_token(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    mattermost: FakeMattermostState,
    mattermost_integration: Any,
) -> None:
    path = f"/webhooks/mattermost/{mattermost_integration.id}"
    hook = {
        "channel_id": "chan00000000000000000000aa",
        "post_id": "w" * 26,
        "user_id": ALICE,
        "user_name": "alice",
        "text": "planner: what is due?",
        "trigger_word": "planner:",
        "team_id": "t",
    }

    for token in ("wrong", "", MATTERMOST_WEBHOOK_TOKEN[:-1]):
        refused = await ingress.post(path, data={**hook, "token": token})
        assert refused.status_code == 401
    assert (await ingress.post("/webhooks/mattermost/no-such-integration", data=hook)).status_code == 404
    accepted = await ingress.post(path, data={**hook, "token": MATTERMOST_WEBHOOK_TOKEN})
    assert accepted.status_code == 200 and accepted.json() == {}
    slash = await ingress.post(
        path,
        data={"channel_id": "chan00000000000000000000aa", "user_id": ALICE, "command": "/planner", "text": "hi"},
        headers={"Authorization": f"Token {MATTERMOST_WEBHOOK_TOKEN}"},
    )
    assert slash.status_code == 200 and slash.json()["response_type"] == "ephemeral"

    await soon(lambda: len(mattermost.posts) == 2)  # one association link for each, by direct message
    await settled(runtime, worker, "mattermost")
    assert len(mattermost.posts) == 2 and all("associate?token=" in p["message"] for p in mattermost.posts)


async def test_team_notifications_go_to_the_configured_channel(
    runtime: Runtime, worker: Worker, mattermost: FakeMattermostState, mattermost_integration: Any
) -> None:
    mattermost.inject_posts.append((429, {"Retry-After": "0"}))

    await publish(runtime, "mattermost", "command", "notify_team", {"message": "Sprint starts"}, team_id=TEAM)

    post = (await soon(lambda: mattermost.posts))[0]
    assert post["channel_id"] == "team0000000000000000000000" and post["message"] == "Sprint starts"

    without, _ = await install(
        runtime,
        InstallRequest(
            "mattermost", "team-2", {"url": mattermost_integration.config.url, "token": fake_mattermost.TOKEN}
        ),
    )
    refused = await publish(
        runtime, "mattermost", "command", "notify_team", {"message": "x"}, integration_id=without.id
    )
    parked_now = await eventually(lambda: parked(runtime))
    assert [p.id for p in parked_now] == [refused.id]
    assert "teamNotificationChannelId" in parked_now[0].error
