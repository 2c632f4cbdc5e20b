"""GitHub end to end: signed webhooks in, rows and result events out, comments through the API."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from schemas.events import ResultEvent, TaskIntake, TaskStatusChange
from tests.conftest import TEAM, Results, eventually, pull_request_payload, queue_depth, signed_github
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker


async def test_signed_pull_request_webhook_becomes_rows_and_status_events(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, results: Results, github_integration: object
) -> None:
    body, headers = signed_github("pull_request", pull_request_payload(reviewers=("hubot",)))

    response = await ingress.post("/webhooks/github", content=body, headers=headers)

    assert response.status_code == 202
    assert response.json()["id"] == f"github:{headers['X-GitHub-Delivery']}"
    row = await eventually(lambda: runtime.pool.fetchrow("SELECT * FROM github_pull_requests WHERE external_id = 555"))
    assert row["team_id"] == TEAM
    assert row["title"] == "Fixes ABC-12: crash on login"
    assert row["status"] == "review_requested"
    assert row["repository"] == "acme/app"
    events = await results.wait_for("task.status_change", count=2)
    for event in events:  # what other services receive is the published contract
        ResultEvent[TaskStatusChange].model_validate(event)
    by_ref = {e["data"]["task_ref"]: e for e in events}
    assert set(by_ref) == {"ABC-12", "XY-3"}
    assert by_ref["ABC-12"]["data"]["status"] == "review"  # fixes, not merged yet, under review
    assert by_ref["ABC-12"]["team_id"] == TEAM
    assert by_ref["ABC-12"]["causation_id"] == response.json()["id"]


async def test_merge_moves_the_task_to_done_once(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, results: Results, github_integration: object
) -> None:
    for action, merged, updated in (
        ("opened", False, "10:00"),
        ("closed", True, "11:00"),
        ("edited", True, "12:00"),
    ):
        payload = pull_request_payload(
            action=action,
            merged=merged,
            state="closed" if merged else "open",
            updated_at=f"2026-11-20T{updated}:00Z",
        )
        body, headers = signed_github("pull_request", payload)
        assert (await ingress.post("/webhooks/github", content=body, headers=headers)).status_code == 202
        await eventually(
            lambda u=updated: runtime.pool.fetchval(
                "SELECT 1 FROM github_pull_requests WHERE updated_at = $1::text::timestamptz",
                f"2026-11-20T{u}:00Z",
            )
        )
    row = await runtime.pool.fetchrow("SELECT status, merged FROM github_pull_requests WHERE external_id = 555")
    assert row["merged"] is True and row["status"] == "approved"
    done = [e for e in results.of("task.status_change") if e["data"]["task_ref"] == "ABC-12"]
    assert [e["data"]["status"] for e in done] == ["in_progress", "done"]  # the edit after merge adds nothing


async def test_bad_signature_is_refused_and_nothing_is_enqueued(
    runtime: Runtime, ingress: httpx.AsyncClient, github_integration: object
) -> None:
    body, headers = signed_github("pull_request", pull_request_payload(), secret="not-the-secret")

    response = await ingress.post("/webhooks/github", content=body, headers=headers)

    assert response.status_code == 401
    assert "signature" in response.json()["error"].lower()
    assert await queue_depth(runtime, runtime.topology.queues("github")) == 0


async def test_the_same_delivery_twice_is_handled_once(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, results: Results, github_integration: object
) -> None:
    body, headers = signed_github(
        "issues",
        {
            "action": "opened",
            "issue": {
                "id": 77,
                "number": 3,
                "title": "Login broken",
                "body": "stack trace",
                "state": "open",
                "html_url": "https://github.com/acme/app/issues/3",
                "user": {"login": "bob", "id": 5},
            },
            "repository": {"id": 9001, "full_name": "acme/app"},
            "installation": {"id": 4242},
        },
    )

    first = await ingress.post("/webhooks/github", content=body, headers=headers)
    await results.wait_for("task.intake")
    second = await ingress.post("/webhooks/github", content=body, headers=headers)  # GitHub redelivery

    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    await eventually(lambda: _depth_zero(runtime))
    await worker.wait_idle()
    intake = results.of("task.intake")
    assert len(intake) == 1
    ResultEvent[TaskIntake].model_validate(intake[0])
    assert intake[0]["data"]["source_id"] == "issue:77" and intake[0]["data"]["title"] == "Login broken"
    assert await runtime.pool.fetchval("SELECT count(*) FROM processed_events") == 1


async def _depth_zero(runtime: Runtime) -> bool:
    return await queue_depth(runtime, runtime.topology.queues("github")) == 0


async def test_a_burst_of_events_for_one_pull_request_publishes_each_status_once(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, results: Results, github_integration: object
) -> None:
    # GitHub sends opened, labeled, review_requested... within a second; the worker handles them side by side.
    for second in range(12):
        payload = pull_request_payload(action="synchronize", updated_at=f"2026-11-20T10:00:{second:02d}Z")
        body, headers = signed_github("pull_request", payload)
        assert (await ingress.post("/webhooks/github", content=body, headers=headers)).status_code == 202

    await eventually(
        lambda: runtime.pool.fetchval(
            "SELECT count(*) = 12 FROM processed_events WHERE id NOT LIKE 'github:pr-task-comment:%'"
        )
    )
    await worker.wait_idle()
    await eventually(lambda: runtime.pool.fetchval("SELECT count(*) = 0 FROM outbox"))
    events = await results.wait_for("task.status_change", count=2)
    assert sorted((e["data"]["task_ref"], e["data"]["status"]) for e in events) == [
        ("ABC-12", "in_progress"),
        ("XY-3", "in_progress"),
    ]
    assert await runtime.pool.fetchval("SELECT updated_at FROM github_pull_requests") == datetime(
        2026, 11, 20, 10, 0, 11, tzinfo=UTC
    )
