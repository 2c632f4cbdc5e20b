"""The pull request comment after a magic word: `fixes ABC-12` moves a task, and the App comments on
the pull request with the task's link, once per (pull request, task), whatever GitHub redelivers,
however often the pull request changes, and when a retry follows a comment already posted."""

from __future__ import annotations

import asyncio
import functools

import httpx
import pytest

from tests.conftest import INSTALLATION_ID, TEAM, Results, eventually, pull_request_payload, signed_github
from tests.fakes.github import FakeGitHubState
from worker.core.settings import Settings
from worker.platform.install import update
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker
from worker.sdk import IntegrationRecord

COMMANDS = "github:pr-task-comment:%"


async def _send(ingress: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> str:
    response = await ingress.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def _processed(runtime: Runtime, envelope_id: str) -> bool:
    return bool(await runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", envelope_id))


async def _comment_commands(runtime: Runtime) -> int:
    """How many comment commands were ever published: each claims its once key in the transaction
    of the webhook that staged it, so this is exact once the webhooks are processed."""
    count: int = await runtime.pool.fetchval(
        "SELECT count(*) FROM emitted_once WHERE key LIKE 'github:pr-task-comment:%'"
    )
    return count


async def test_a_magic_word_comments_the_task_link_once_per_pull_request_and_task(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    github: FakeGitHubState,
    github_integration: object,
) -> None:
    opened = signed_github("pull_request", pull_request_payload())  # "Fixes ABC-12 ...", "Also refs XY-3"

    await _send(ingress, *opened)

    comments = await eventually(lambda: github.comments if len(github.comments) >= 2 else None)
    by_task = {("ABC-12" if "ABC-12" in c["body"] else "XY-3"): c for c in comments}
    assert by_task["ABC-12"]["body"].startswith("- Fixes [ABC-12](https://app.example.com/tasks/ABC-12)")
    assert by_task["XY-3"]["body"].startswith("- refs [XY-3](https://app.example.com/tasks/XY-3)")
    for comment in comments:  # on the pull request, as the installation, with its repeat marker
        assert comment["repository"] == "acme/app" and comment["number"] == 7
        assert comment["installation_id"] == INSTALLATION_ID
        assert "<!-- integration-worker:github:pr-task-comment:" in comment["body"]
    log = await eventually(lambda: runtime.pool.fetchrow("SELECT * FROM integration_logs WHERE key = 'task_linked'"))
    assert log["message"].startswith("linked ") and "acme/app#7" in log["message"]

    # GitHub redelivers the same delivery; the inbox then forgets the commands' ids (as it does after
    # IW_INBOX_RETENTION_DAYS); the pull request is edited, then merged: the task moves to done.
    await _send(ingress, *opened)
    await runtime.pool.execute("DELETE FROM processed_events WHERE id LIKE $1", COMMANDS)
    for action, merged, at in (("edited", False, "11:00"), ("closed", True, "12:00")):
        payload = pull_request_payload(
            action=action, merged=merged, state="closed" if merged else "open", updated_at=f"2026-11-20T{at}:00Z"
        )
        envelope_id = await _send(ingress, *signed_github("pull_request", payload))
        await eventually(functools.partial(_processed, runtime, envelope_id))
    done = await results.wait_for("task.status_change", count=3)
    assert ("ABC-12", "done") in {(e["data"]["task_ref"], e["data"]["status"]) for e in done}
    assert await _comment_commands(runtime) == 2  # none published again, so no second comment
    assert len(github.comments) == 2
    assert github.comment_attempts == 2


async def test_a_burst_of_events_of_one_pull_request_comments_each_task_once(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, github: FakeGitHubState, github_integration: object
) -> None:
    for second in range(10):  # opened, labeled, review_requested... handled side by side
        payload = pull_request_payload(action="synchronize", updated_at=f"2026-11-20T10:00:{second:02d}Z")
        await _send(ingress, *signed_github("pull_request", payload))

    await eventually(lambda: len(github.comments) >= 2)
    await eventually(
        lambda: runtime.pool.fetchval("SELECT count(*) = 2 FROM processed_events WHERE id LIKE $1", COMMANDS)
    )
    assert await _comment_commands(runtime) == 2
    assert sorted(c["body"].split("]")[0] for c in github.comments) == ["- Fixes [ABC-12", "- refs [XY-3"]


async def test_a_pull_request_without_magic_words_gets_no_comment(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, github: FakeGitHubState, github_integration: object
) -> None:
    payload = pull_request_payload(title="Tidy the README", body="nothing to close here")

    envelope_id = await _send(ingress, *signed_github("pull_request", payload))

    await eventually(lambda: _processed(runtime, envelope_id))
    assert await _comment_commands(runtime) == 0  # nothing staged: no comment will come
    assert github.comments == [] and github.comment_attempts == 0


async def test_a_team_that_turned_task_comments_off_gets_none_and_its_tasks_still_move(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    github: FakeGitHubState,
    github_integration: IntegrationRecord,
) -> None:
    await update(runtime, github_integration.id, TEAM, {"taskComments": False}, source="test")

    envelope_id = await _send(ingress, *signed_github("pull_request", pull_request_payload()))

    await eventually(lambda: _processed(runtime, envelope_id))
    moved = await results.wait_for("task.status_change", count=2)
    assert {e["data"]["task_ref"] for e in moved} == {"ABC-12", "XY-3"}
    assert await _comment_commands(runtime) == 0  # nothing staged: no comment will come
    assert github.comments == [] and github.comment_attempts == 0


class TestARetryAfterTheCommentWasPosted:
    """The comment reaches GitHub, then the run fails before its commit (here: the handler's
    timeout while GitHub is slow to answer): the retry finds its comment and posts none."""

    @pytest.fixture
    def settings(self, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
        monkeypatch.setenv("IW_HANDLER_TIMEOUT", "1")
        return Settings()

    async def test_does_not_comment_twice(
        self,
        runtime: Runtime,
        worker: Worker,
        ingress: httpx.AsyncClient,
        github: FakeGitHubState,
        github_integration: object,
    ) -> None:
        github.comment_delay = 3.0  # GitHub stores the comment, then answers too late
        payload = pull_request_payload(title="Fixes ABC-12", body="")

        await _send(ingress, *signed_github("pull_request", payload))
        started = await asyncio.to_thread(github.comment_started.wait, 15)
        assert started, "the worker never commented"
        github.comment_delay = 0.0

        await eventually(
            lambda: runtime.pool.fetchval("SELECT count(*) = 1 FROM processed_events WHERE id LIKE $1", COMMANDS)
        )

        assert github.comment_listings >= 1  # the first run timed out: a retry looked for its comment
        assert len(github.comments) == 1
        assert github.comment_attempts == 1  # the retry found its marker and did not post
