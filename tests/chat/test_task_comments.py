"""Task comments end to end: the platform's comment events in, `message.received` for comments that
mention the bot, the agent's reply out as a `task_comment.reply` event."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chat.conftest import parked, settled
from tests.conftest import TEAM, Results
from tests.helpers import publish
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker


@pytest.fixture
async def task_comments(runtime: Runtime) -> Any:
    record, _ = await install(
        runtime, InstallRequest("task-comments", TEAM, {"botUserId": "user-bot", "botName": "mimrai"}, source="test")
    )
    return record


def comment(text: str, *, author: str = "user-alice", comment_id: str = "c-1", **extra: Any) -> dict[str, Any]:
    return {"task_id": "task-42", "team_id": TEAM, "author_id": author, "comment_id": comment_id, "text": text, **extra}


async def test_a_comment_mentioning_the_bot_reaches_the_agent_and_its_reply_goes_back_as_an_event(
    runtime: Runtime, worker: Worker, results: Results, task_comments: Any
) -> None:
    for ignored in (
        comment("looks good to me", comment_id="c-0"),
        comment("ping @mimraix and me@mimrai.dev", comment_id="c-00"),
        comment("@mimrai noted, thanks", author="user-bot", comment_id="c-000"),  # the bot's own
    ):
        await publish(runtime, "task-comments", "event", "comment_created", ignored, team_id=TEAM)
    await publish(
        runtime,
        "task-comments",
        "event",
        "comment_created",
        comment("@Mimrai what is left to do here?", author_name="Alice"),
        team_id=TEAM,
    )

    received = (await results.wait_for("message.received"))[0]
    data = received["data"]
    assert data["conversation_id"] == "task-task-42-thread"
    assert data["text"] == "what is left to do here?"
    assert (data["user_id"], data["user_link_id"], data["external_user_name"]) == ("user-alice", None, "Alice")
    assert data["reply"]["routing_key"] == "task-comments.command.reply"
    assert received["team_id"] == TEAM
    reaction = (await results.wait_for("task_comment.reaction"))[0]["data"]
    assert reaction == {"task_id": "task-42", "comment_id": "c-1", "emoji": "eyes"}

    reply = data["reply"]
    await publish(
        runtime,
        "task-comments",
        "command",
        reply["action"],
        {**reply["input"], reply["text_field"]: "Only the release notes."},
        integration_id=reply["integration_id"],
    )
    stored = (await results.wait_for("task_comment.reply"))[0]
    assert stored["data"] == {
        "task_id": "task-42",
        "text": "Only the release notes.",
        "in_reply_to_comment_id": "c-1",
        "conversation_id": "task-task-42-thread",
    }
    assert stored["team_id"] == TEAM
    await settled(runtime, worker, "task-comments")
    assert len(results.of("message.received")) == 1


async def test_a_mention_by_user_id_counts_and_teams_without_the_assistant_are_skipped(
    runtime: Runtime, worker: Worker, results: Results, task_comments: Any
) -> None:
    await publish(
        runtime,
        "task-comments",
        "event",
        "comment_created",
        {"taskId": "t-7", "teamId": "team-2", "userId": "user-bob", "commentId": "c-9", "comment": "@mimrai hi"},
        team_id="team-2",  # MIMRAI's names, another team: no integration there
    )
    await publish(
        runtime,
        "task-comments",
        "event",
        "comment_created",
        comment("can you summarise?", mentions=["user-bot"], comment_id="c-2"),
        team_id=TEAM,
    )

    data = (await results.wait_for("message.received"))[0]["data"]
    assert data["text"] == "can you summarise?" and data["message_id"] == "c-2"
    await settled(runtime, worker, "task-comments")
    assert len(results.of("message.received")) == 1
    assert await parked(runtime) == []
