"""Mattermost end to end: the WebSocket listener (run by the services runner), outgoing webhooks and
slash commands at the ingress, association links, replies and notifications through the fake API."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.chat.conftest import (
    MATTERMOST_WEBHOOK_TOKEN,
    assert_tampered_tokens_link_nobody,
    link_count,
    link_directly,
    link_token_in,
    parked,
    settled,
)
from tests.conftest import TEAM, Results, eventually
from tests.fakes import mattermost as fake_mattermost
from tests.fakes.mattermost import FakeMattermostState, posted_event
from tests.helpers import publish
from worker.platform.install import InstallError, InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.services import ServiceRunner
from worker.runtime.worker import Worker

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
    await eventually(lambda: mattermost.connected == 1)
    direct = posted_event(message="hi", channel_type="D", channel_id="dm00000000000000000000000a", post_id="p" * 26)

    mattermost.broadcast(direct)

    link = (await eventually(lambda: mattermost.posts))[0]
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
    await eventually(lambda: len(mattermost.posts) == 2)  # "your account is linked", in the same thread
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
    await eventually(lambda: mattermost.reactions)
    assert mattermost.reactions == [{"user_id": fake_mattermost.BOT_ID, "post_id": "q" * 26, "emoji_name": "eyes"}]

    reply = data["reply"]
    answer = await publish(
        runtime,
        "mattermost",
        "command",
        reply["action"],
        {**reply["input"], reply["text_field"]: "Two tasks."},
        integration_id=reply["integration_id"],
    )
    await eventually(lambda: len(mattermost.posts) == 3)
    assert mattermost.posts[2] == {
        "id": mattermost.posts[2]["id"],
        "channel_id": "chan00000000000000000000aa",
        "message": "Two tasks.",
        "root_id": "r" * 26,
        "props": {"iw_command_id": answer.id},  # a retry of the command finds it by this
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
    await eventually(lambda: mattermost.connected == 1)

    mattermost.broadcast(posted_event(message="@planner hello", mentions=[fake_mattermost.BOT_ID]))

    post = (await eventually(lambda: mattermost.posts))[0]
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

    await eventually(lambda: len(mattermost.posts) == 2)  # one association link for each, by direct message
    await settled(runtime, worker, "mattermost")
    assert len(mattermost.posts) == 2 and all("associate?token=" in p["message"] for p in mattermost.posts)


async def test_team_notifications_go_to_the_configured_channel(
    runtime: Runtime, worker: Worker, mattermost: FakeMattermostState, mattermost_integration: Any
) -> None:
    mattermost.inject_posts.append((429, {"Retry-After": "0"}))

    await publish(runtime, "mattermost", "command", "notify_team", {"message": "Sprint starts"}, team_id=TEAM)

    post = (await eventually(lambda: mattermost.posts))[0]
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


def _history_post(post_id: str, message: str, channel_id: str, **fields: Any) -> dict[str, Any]:
    created = int(time.time() * 1000)
    return {
        "id": post_id, "channel_id": channel_id, "user_id": ALICE, "message": message, "root_id": "",
        "create_at": created, "update_at": created, "delete_at": 0, "type": "", **fields,
    }  # fmt: skip


CHANNEL = "chan00000000000000000000aa"
DIRECT = "dm00000000000000000000000a"


def _channels(mattermost: FakeMattermostState) -> None:
    now = int(time.time() * 1000)
    mattermost.channels.extend(
        [
            {"id": CHANNEL, "type": "O", "name": "town-square", "last_post_at": now},
            {"id": DIRECT, "type": "D", "name": f"{fake_mattermost.BOT_ID}__{ALICE}", "last_post_at": now},
            {"id": "quiet000000000000000000000", "type": "O", "name": "quiet", "last_post_at": now - 86_400_000},
        ]
    )
    mattermost.users[ALICE] = "alice"


async def test_posts_made_while_the_socket_was_down_are_caught_up_once(
    runtime: Runtime,
    worker: Worker,
    results: Results,
    mattermost: FakeMattermostState,
    mattermost_integration: Any,
    services: ServiceRunner,
) -> None:
    await link_directly(runtime, mattermost_integration, ALICE, "user-alice")
    _channels(mattermost)
    await eventually(lambda: mattermost.connected == 1)
    live = _history_post("a" * 26, "@planner seen live", CHANNEL)
    mattermost.history.append(live)  # on the server, and sent over the socket
    mattermost.broadcast(posted_event(message=live["message"], mentions=[fake_mattermost.BOT_ID], post_id=live["id"]))
    await results.wait_for("message.received")
    connects = mattermost.connects

    # posted while the socket was down: the server has them, no listener got them
    mattermost.history.extend(
        [
            _history_post("b" * 26, "@planner missed in the channel", CHANNEL),
            _history_post("c" * 26, "missed in a direct message", DIRECT),
            _history_post("d" * 26, "lunch?", CHANNEL),  # not for the bot
            _history_post("e" * 26, "@planner.", CHANNEL, user_id=fake_mattermost.BOT_ID),  # its own
            _history_post("f" * 26, "@planner joined", CHANNEL, type="system_join_channel"),
            _history_post("g" * 26, "@planner gone", CHANNEL, delete_at=1),
            _history_post("h" * 26, "mail@planner.example", CHANNEL),  # not a mention
        ]
    )
    mattermost.close_all()

    received = await results.wait_for("message.received", count=3)
    await eventually(lambda: mattermost.connects > connects and mattermost.connected == 1)
    await settled(runtime, worker, "mattermost")
    texts = sorted(r["data"]["text"] for r in results.of("message.received"))
    assert texts == ["missed in a direct message", "missed in the channel", "seen live"]
    by_text = {r["data"]["text"]: r["data"] for r in received}
    assert by_text["missed in a direct message"]["conversation_id"] == f"mattermost-{DIRECT}-{'c' * 26}"
    assert by_text["missed in the channel"]["user_id"] == "user-alice"
    asked = [channel for channel, _ in mattermost.history_requests]
    assert "quiet000000000000000000000" not in asked  # nothing posted there since the gap began


async def test_a_listener_starting_catches_up_recent_posts_but_none_from_before_the_install(
    runtime: Runtime,
    worker: Worker,
    results: Results,
    mattermost: FakeMattermostState,
    mattermost_integration: Any,
) -> None:
    await link_directly(runtime, mattermost_integration, ALICE, "user-alice")
    _channels(mattermost)
    installed = int(mattermost_integration.row.created_at.timestamp() * 1000)
    mattermost.history.extend(
        [
            _history_post("m" * 26, "@planner before the install", CHANNEL, create_at=installed - 300_000),
            _history_post("n" * 26, "@planner while the workers restarted", CHANNEL),
        ]
    )
    runner = ServiceRunner(runtime, poll_interval=0.2)
    await runner.start()
    try:
        await results.wait_for("message.received")
        await settled(runtime, worker, "mattermost")
    finally:
        await runner.stop()
    assert [r["data"]["text"] for r in results.of("message.received")] == ["while the workers restarted"]


async def test_a_post_the_server_took_before_its_answer_was_lost_is_not_made_again(
    runtime: Runtime, worker: Worker, mattermost: FakeMattermostState, mattermost_integration: Any
) -> None:
    mattermost.lose_post_answers = 1  # posted, then 502: the worker cannot know
    sent = await publish(
        runtime, "mattermost", "command", "post_message", {"channel_id": CHANNEL, "message": "once"},
        integration_id=mattermost_integration.id,
    )  # fmt: skip
    await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", sent.id))
    assert [p["message"] for p in mattermost.posts] == ["once"]
    assert [channel for channel, _ in mattermost.history_requests] == [CHANNEL]  # the retry looked first
