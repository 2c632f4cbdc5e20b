"""Threads for the agent: `message.received` from Slack and Mattermost carries the thread's earlier
messages (up to IW_<TYPE>_THREAD_CONTEXT_MESSAGES, each author's platform user when linked, the
bot's own answers marked), bounded in size like MIMRAI's 3,000 characters; and the `read_thread`
tools, for a linked user who is a member of the channel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from schemas.envelope import Envelope
from tests.chat.conftest import link_directly, parked, post_slack, settled
from tests.conftest import TEAM, Results, eventually
from tests.fakes import mattermost as fake_mattermost
from tests.fakes import slack as fake_slack
from tests.fakes.mattermost import FakeMattermostState, posted_event
from tests.fakes.slack import FakeSlackState
from tests.tools.conftest import BrokerCaller
from worker.platform.tools import available_tools
from worker.runtime.runtime import Runtime
from worker.runtime.services import ServiceRunner
from worker.runtime.worker import Worker

CHANNEL = "C0GENERAL"
THREAD = "1700000000.000100"
BOT = fake_slack.BOT_USER_ID
CUT = "… [cut: {} more characters]"


@pytest.fixture
def env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> dict[str, str]:
    """Three messages of context unless a test asks for another limit (`indirect` parameter)."""
    limit = str(getattr(request, "param", 3))
    values = {"IW_SLACK_THREAD_CONTEXT_MESSAGES": limit, "IW_MATTERMOST_THREAD_CONTEXT_MESSAGES": limit}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**env, **values}


def slack_mention(text: str, ts: str, *, thread_ts: str | None = THREAD, user: str = "U0ALICE") -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": f"<@{BOT}> {text}",
        "ts": ts,
        "channel": CHANNEL,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return {
        "team_id": fake_slack.TEAM_ID,
        "api_app_id": "A0APP",
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": 1700000000,
    }


def seed_slack_thread(slack: FakeSlackState) -> None:
    slack.users.update({"U0ALICE": "alice", "U0BOB": "bob"})
    slack.say(CHANNEL, THREAD, "Who deploys on Friday?", user="U0ALICE")
    slack.say(CHANNEL, "1700000000.000200", "I can, after 3pm.", user="U0BOB", thread_ts=THREAD)
    slack.say(
        CHANNEL, "1700000000.000250", "<@U0CAROL> has joined", user="U0CAROL", thread_ts=THREAD, subtype="channel_join"
    )
    slack.say(CHANNEL, "1700000000.000300", "Noted: Bob deploys Friday.", user=BOT, thread_ts=THREAD)
    slack.say(CHANNEL, "1700000000.000350", "CI passed", bot_id="B0CI", subtype="bot_message", thread_ts=THREAD)


def summary(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            m["message_id"],
            m["external_user_id"],
            m["user_id"],
            m["external_user_name"],
            m["text"],
            m["is_bot"],
            m["is_agent"],
        )
        for m in messages
    ]


# --- Slack ---------------------------------------------------------------------------------------------


async def test_a_slack_message_in_a_thread_carries_its_newest_earlier_messages_with_their_authors(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    slack: FakeSlackState,
    slack_integration: Any,
) -> None:
    await link_directly(runtime, slack_integration, "U0ALICE", "user-alice")
    await link_directly(runtime, slack_integration, "U0BOB", "user-bob")
    seed_slack_thread(slack)
    slack.say(CHANNEL, "1700000000.000500", f"<@{BOT}> who deploys?", user="U0ALICE", thread_ts=THREAD)  # this one
    slack.say(CHANNEL, "1700000000.000600", "later", user="U0BOB", thread_ts=THREAD)  # after it

    assert (await post_slack(ingress, slack_mention("who deploys?", "1700000000.000500"))).status_code == 202

    data = (await results.wait_for("message.received"))[0]["data"]
    assert data["text"] == "who deploys?" and data["text_truncated"] is False
    # three (IW_SLACK_THREAD_CONTEXT_MESSAGES) of the four said before it; the join is nobody's word
    assert summary(data["thread"]) == [
        ("1700000000.000200", "U0BOB", "user-bob", "bob", "I can, after 3pm.", False, False),
        ("1700000000.000300", BOT, None, None, "Noted: Bob deploys Friday.", True, True),
        ("1700000000.000350", "B0CI", None, None, "CI passed", True, False),
    ]
    assert data["thread_omitted"] == 1
    when = datetime.fromisoformat(data["thread"][0]["timestamp"])
    assert when == datetime(2023, 11, 14, 22, 13, 20, 200, tzinfo=UTC)
    assert slack.of("conversations.replies") == [{"channel": CHANNEL, "ts": THREAD, "limit": "200"}]

    # a message that starts no thread has no earlier messages to read
    assert (await post_slack(ingress, slack_mention("and you?", "1700000001.000100", thread_ts=None))).status_code
    later = (await results.wait_for("message.received", 2))[1]["data"]
    assert later["thread"] == [] and later["thread_omitted"] == 0
    assert len(slack.of("conversations.replies")) == 1


@pytest.mark.parametrize("env", [20], indirect=True)
async def test_long_texts_are_cut_at_3000_characters_and_the_thread_is_bounded_as_a_whole(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    slack: FakeSlackState,
    slack_integration: Any,
) -> None:
    await link_directly(runtime, slack_integration, "U0ALICE", "user-alice")
    slack.users["U0BOB"] = "bob"
    letters = "abcdefgh"
    for i, letter in enumerate(letters):
        slack.say(CHANNEL, f"1700000000.00{i + 1}000", letter * 4000, user="U0BOB", thread_ts=THREAD)

    await post_slack(ingress, slack_mention("x" * 5000, "1700000001.000000"))

    data = (await results.wait_for("message.received"))[0]["data"]
    assert data["text"] == "x" * 3000 + CUT.format(2000) and data["text_truncated"] is True
    # each cut to 3,000 characters; the newest that fit in 15,000 together: four of the eight
    assert [m["text"] for m in data["thread"]] == [letter * 3000 + CUT.format(1000) for letter in letters[4:]]
    assert all(m["truncated"] for m in data["thread"])
    assert data["thread_omitted"] == 4
    assert sum(len(m["text"]) for m in data["thread"]) <= 15000


async def test_without_the_history_scope_the_message_reaches_the_agent_without_its_thread(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    slack: FakeSlackState,
    slack_integration: Any,
) -> None:
    await link_directly(runtime, slack_integration, "U0ALICE", "user-alice")
    seed_slack_thread(slack)
    slack.history_scope = False  # the workspace granted no channels:history

    await post_slack(ingress, slack_mention("who deploys?", "1700000000.000500"))

    data = (await results.wait_for("message.received"))[0]["data"]
    assert data["text"] == "who deploys?" and data["thread"] == [] and data["thread_omitted"] == 0
    assert len(slack.of("conversations.replies")) == 1  # asked once, refused, not retried
    await eventually(lambda: slack.of("reactions.add"))  # acknowledged as usual
    await settled(runtime, worker, "slack")
    assert await parked(runtime) == []


@pytest.mark.parametrize("env", [0], indirect=True)
async def test_a_limit_of_zero_turns_thread_context_off(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    slack: FakeSlackState,
    slack_integration: Any,
) -> None:
    await link_directly(runtime, slack_integration, "U0ALICE", "user-alice")
    seed_slack_thread(slack)

    await post_slack(ingress, slack_mention("who deploys?", "1700000000.000500"))

    data = (await results.wait_for("message.received"))[0]["data"]
    assert data["thread"] == [] and data["thread_omitted"] == 0
    assert slack.of("conversations.replies") == []


def read_thread_call(type_: str, integration: Any, user_id: str, payload: dict[str, Any]) -> Envelope:
    return Envelope(
        id=f"call:{uuid.uuid4()}",
        type=type_,
        kind="command",
        name="read_thread",
        integration_id=integration.id,
        team_id=TEAM,
        headers={"x-user-id": user_id},
        payload=payload,
    )


async def test_slack_read_thread_is_a_tool_for_linked_members_of_the_channel_only(
    runtime: Runtime, worker: Worker, caller: BrokerCaller, slack: FakeSlackState, slack_integration: Any
) -> None:
    await link_directly(runtime, slack_integration, "U0ALICE", "user-alice")
    await link_directly(runtime, slack_integration, "U0MALLORY", "user-mallory")
    seed_slack_thread(slack)
    slack.members[CHANNEL] = ["U0ALICE", "U0BOB", BOT]
    assert "slack_read_thread" in [t.name for t in await available_tools(runtime, TEAM, "user-alice")]
    assert "slack_read_thread" not in [t.name for t in await available_tools(runtime, TEAM, "user-nobody")]

    answer = await caller.call(
        read_thread_call("slack", slack_integration, "user-alice", {"channel": CHANNEL, "thread_ts": THREAD})
    )

    assert answer["ok"] is True, answer
    assert summary(answer["output"]["messages"]) == [
        (THREAD, "U0ALICE", "user-alice", "alice", "Who deploys on Friday?", False, False),
        ("1700000000.000200", "U0BOB", None, "bob", "I can, after 3pm.", False, False),
        ("1700000000.000300", BOT, None, None, "Noted: Bob deploys Friday.", True, True),
        ("1700000000.000350", "B0CI", None, None, "CI passed", True, False),
    ]
    assert answer["output"]["omitted"] == 0
    one = {"channel": CHANNEL, "thread_ts": THREAD, "limit": 1}
    newest = await caller.call(read_thread_call("slack", slack_integration, "user-alice", one))
    assert [m["text"] for m in newest["output"]["messages"]] == ["CI passed"] and newest["output"]["omitted"] == 3

    # someone not in the channel cannot have the agent read it for them
    refused = await caller.call(
        read_thread_call("slack", slack_integration, "user-mallory", {"channel": CHANNEL, "thread_ts": THREAD})
    )
    assert (refused["ok"], refused["status"]) == (False, "refused")
    assert "not a member" in refused["error"]
    replies_before = len(slack.of("conversations.replies"))
    slack.read_scope = False
    no_scope = await caller.call(
        read_thread_call("slack", slack_integration, "user-alice", {"channel": CHANNEL, "thread_ts": THREAD})
    )
    assert no_scope["status"] == "refused" and "missing_scope" in no_scope["error"]
    assert "channels:read" in no_scope["error"]
    assert len(slack.of("conversations.replies")) == replies_before  # nothing read for either of them
    assert await parked(runtime) == []


# --- Mattermost ---------------------------------------------------------------------------------------

ALICE = "alice000000000000000000000"
BOB = "bob00000000000000000000000"
MM_CHANNEL = "chan00000000000000000000aa"
ROOT = "root0000000000000000000000"
T0 = 1700000000000


def seed_mattermost_thread(mattermost: FakeMattermostState) -> None:
    mattermost.users.update({ALICE: "alice", BOB: "bob"})
    mattermost.say(ROOT, MM_CHANNEL, ALICE, "Who deploys on Friday?", create_at=T0)
    mattermost.say("reply1", MM_CHANNEL, BOB, "I can, after 3pm.", root_id=ROOT, create_at=T0 + 1000)
    mattermost.say(
        "joined", MM_CHANNEL, BOB, "bob joined", root_id=ROOT, create_at=T0 + 1500, type_="system_join_channel"
    )
    mattermost.say("gone", MM_CHANNEL, BOB, "oops", root_id=ROOT, create_at=T0 + 1700, deleted=True)
    mattermost.say(
        "answer", MM_CHANNEL, fake_mattermost.BOT_ID, "Noted: Bob deploys.", root_id=ROOT, create_at=T0 + 2000
    )
    mattermost.say(
        "ci", MM_CHANNEL, "cibot000000000000000000000", "CI passed", root_id=ROOT, create_at=T0 + 3000,
        props={"from_bot": "true"},
    )  # fmt: skip


async def test_a_mattermost_post_in_a_thread_carries_its_newest_earlier_posts(
    runtime: Runtime,
    worker: Worker,
    results: Results,
    mattermost: FakeMattermostState,
    mattermost_integration: Any,
    services: ServiceRunner,
) -> None:
    await link_directly(runtime, mattermost_integration, ALICE, "user-alice")
    await link_directly(runtime, mattermost_integration, BOB, "user-bob")
    seed_mattermost_thread(mattermost)
    mattermost.say("current", MM_CHANNEL, ALICE, "@planner who deploys?", root_id=ROOT, create_at=T0 + 5000)
    mattermost.say("after", MM_CHANNEL, BOB, "later", root_id=ROOT, create_at=T0 + 6000)
    await eventually(lambda: mattermost.connected == 1)

    mattermost.broadcast(
        posted_event(
            message="@planner who deploys?",
            mentions=[fake_mattermost.BOT_ID],
            post_id="current",
            root_id=ROOT,
            channel_id=MM_CHANNEL,
        )
    )

    data = (await results.wait_for("message.received"))[0]["data"]
    assert data["text"] == "who deploys?"
    assert summary(data["thread"]) == [
        ("reply1", BOB, "user-bob", "bob", "I can, after 3pm.", False, False),
        ("answer", fake_mattermost.BOT_ID, None, None, "Noted: Bob deploys.", True, True),
        ("ci", "cibot000000000000000000000", None, None, "CI passed", True, False),
    ]
    assert data["thread_omitted"] == 1
    assert datetime.fromisoformat(data["thread"][0]["timestamp"]) == datetime.fromtimestamp(1700000001, UTC)


async def test_a_server_that_refuses_the_thread_leaves_the_post_without_its_context(
    runtime: Runtime,
    worker: Worker,
    results: Results,
    mattermost: FakeMattermostState,
    mattermost_integration: Any,
    services: ServiceRunner,
) -> None:
    await link_directly(runtime, mattermost_integration, ALICE, "user-alice")
    seed_mattermost_thread(mattermost)
    mattermost.thread_failure = 403
    await eventually(lambda: mattermost.connected == 1)

    mattermost.broadcast(
        posted_event(message="@planner hi", mentions=[fake_mattermost.BOT_ID], post_id="p2", root_id=ROOT)
    )

    data = (await results.wait_for("message.received"))[0]["data"]
    assert data["text"] == "hi" and data["thread"] == []
    await eventually(lambda: mattermost.reactions)
    await settled(runtime, worker, "mattermost")
    assert await parked(runtime) == []


async def test_mattermost_read_thread_is_a_tool_for_linked_members_of_the_channel_only(
    runtime: Runtime,
    worker: Worker,
    caller: BrokerCaller,
    mattermost: FakeMattermostState,
    mattermost_integration: Any,
) -> None:
    await link_directly(runtime, mattermost_integration, ALICE, "user-alice")
    await link_directly(runtime, mattermost_integration, "mallory000000000000000000a", "user-mallory")
    seed_mattermost_thread(mattermost)
    mattermost.members[MM_CHANNEL] = {ALICE, BOB}
    assert "mattermost_read_thread" in [t.name for t in await available_tools(runtime, TEAM, "user-alice")]

    answer = await caller.call(
        read_thread_call("mattermost", mattermost_integration, "user-alice", {"root_id": "reply1", "limit": 3})
    )

    assert answer["ok"] is True, answer
    assert [m["message_id"] for m in answer["output"]["messages"]] == ["reply1", "answer", "ci"]
    assert answer["output"]["omitted"] == 1
    assert answer["output"]["messages"][0]["external_user_name"] == "bob"

    refused = await caller.call(
        read_thread_call("mattermost", mattermost_integration, "user-mallory", {"root_id": ROOT})
    )
    assert refused["status"] == "refused" and "not a member" in refused["error"]
    nope = {"root_id": "nope"}
    missing = await caller.call(read_thread_call("mattermost", mattermost_integration, "user-alice", nope))
    assert missing["status"] == "refused"
    assert await parked(runtime) == []
