"""The `comment` action, retries, parking and replay, as the platform and an operator see them."""

from __future__ import annotations

import json

import pytest

from tests.conftest import INSTALLATION_ID, TEAM, eventually
from tests.fakes.github import FakeGitHubState
from tests.helpers import cli, publish
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

COMMENT = {"repository": "acme/app", "issue_number": 7, "body": "Deployed to staging."}


async def test_comment_command_reaches_github_with_an_installation_token(
    runtime: Runtime, worker: Worker, github: FakeGitHubState, github_integration: object
) -> None:
    await publish(runtime, "github", "command", "comment", COMMENT, team_id=TEAM)
    await publish(runtime, "github", "command", "comment", {**COMMENT, "body": "Second"}, team_id=TEAM)

    await eventually(lambda: _count(github, 2))
    first, second = github.comments
    assert first["repository"] == "acme/app" and first["number"] == 7
    assert first["body"].startswith("Deployed to staging.")
    assert second["body"].startswith("Second")
    assert first["installation_id"] == INSTALLATION_ID  # the fake accepted the token it minted for it
    # one token minted at install (repositories) is reused: no new one per comment
    assert github.token_requests == 1


async def test_a_transient_failure_succeeds_on_a_later_attempt(
    runtime: Runtime, worker: Worker, github: FakeGitHubState, github_integration: object
) -> None:
    github.fail_comments.extend([503, 502])  # a comment's POST is not retried inline: the retry queue takes over
    envelope = await publish(runtime, "github", "command", "comment", COMMENT, team_id=TEAM)

    await eventually(lambda: _count(github, 1))
    assert github.comment_attempts == 3
    assert await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", envelope.id))
    await worker.wait_idle()
    assert len(github.comments) == 1


async def test_a_comment_stored_before_its_answer_was_lost_is_posted_once(
    runtime: Runtime, worker: Worker, github: FakeGitHubState, github_integration: object
) -> None:
    github.fail_after_storing.append(502)  # GitHub stored it, the answer says otherwise
    envelope = await publish(runtime, "github", "command", "comment", COMMENT, team_id=TEAM)

    assert await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", envelope.id))
    await worker.wait_idle()
    assert github.comment_attempts == 1  # not sent again inline; the message's retry found its marker
    assert github.comment_listings >= 1
    assert len(github.comments) == 1


@pytest.mark.parametrize("command_id", [None, "long-" + "x" * 300])  # longer than an AMQP short string
async def test_a_command_that_always_fails_is_parked_with_its_reason_and_can_be_replayed(
    runtime: Runtime,
    worker: Worker,
    github: FakeGitHubState,
    github_integration: object,
    env: dict[str, str],
    command_id: str | None,
) -> None:
    github.always_fail_comments = 503
    envelope = await publish(runtime, "github", "command", "comment", COMMENT, team_id=TEAM, id=command_id)

    log = await eventually(
        lambda: runtime.pool.fetchrow(
            "SELECT * FROM integration_logs WHERE level = 'error' AND event_id = $1", envelope.id
        )
    )
    assert "503" in log["message"]
    assert log["details"]["attempts"] == 3  # first try + the two configured retry delays
    listed = cli(env, "dead", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    parked = json.loads(listed.stdout)
    assert [p["id"] for p in parked] == [envelope.id]
    assert "HTTP 503" in parked[0]["error"] and parked[0]["attempts"] == 3
    assert github.comments == []

    github.always_fail_comments = None  # the provider recovered
    replayed = cli(env, "dead", "replay", envelope.id)

    assert replayed.returncode == 0, replayed.stderr
    assert "1 message(s) replayed" in replayed.stdout
    await eventually(lambda: _count(github, 1))
    assert json.loads(cli(env, "dead", "list", "--json").stdout) == []


async def test_a_provider_refusal_is_parked_at_once(
    runtime: Runtime, worker: Worker, github: FakeGitHubState, github_integration: object
) -> None:
    github.always_fail_comments = 422
    envelope = await publish(runtime, "github", "command", "comment", COMMENT, team_id=TEAM)

    log = await eventually(
        lambda: runtime.pool.fetchrow(
            "SELECT * FROM integration_logs WHERE level = 'error' AND event_id = $1", envelope.id
        )
    )
    assert "HTTP 422" in log["message"]
    assert log["message"].endswith("-> HTTP 422: injected failure")  # GitHub's own words say why
    assert log["details"]["attempts"] == 1
    assert github.comment_attempts == 1


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"repository": "not a repo", "issue_number": 7, "body": "x"}, "repository"),
        ({"repository": "acme/..", "issue_number": 7, "body": "x"}, "repository"),  # would leave /repos/
        ({"repository": "./app", "issue_number": 7, "body": "x"}, "repository"),
        ({"repository": "acme/app", "issue_number": 0, "body": "x"}, "issue_number"),
        ({"repository": "acme/app", "issue_number": 7}, "body"),
    ],
)
async def test_invalid_command_input_is_parked_without_calling_github(
    runtime: Runtime,
    worker: Worker,
    github: FakeGitHubState,
    github_integration: object,
    payload: dict[str, object],
    error: str,
) -> None:
    envelope = await publish(runtime, "github", "command", "comment", payload, team_id=TEAM)

    log = await eventually(
        lambda: runtime.pool.fetchrow(
            "SELECT * FROM integration_logs WHERE level = 'error' AND event_id = $1", envelope.id
        )
    )
    assert log["message"].startswith("invalid input") and error in log["message"]
    assert github.comment_attempts == 0


async def test_a_command_for_a_team_without_the_integration_is_parked(
    runtime: Runtime, worker: Worker, github: FakeGitHubState, github_integration: object, env: dict[str, str]
) -> None:
    envelope = await publish(runtime, "github", "command", "comment", COMMENT, team_id="another-team")

    async def parked() -> list[dict[str, object]]:
        return [p for p in json.loads(cli(env, "dead", "list", "--json").stdout) if p["id"] == envelope.id]

    found = await eventually(parked, timeout=20, interval=0.3)
    assert "unknown integration" in str(found[0]["error"])
    assert github.comment_attempts == 0


async def _count(github: FakeGitHubState, n: int) -> bool:
    return len(github.comments) >= n
