"""`issue_comment` webhooks: a person's comment on an issue or a pull request becomes `task.intake`;
a bot's comment (the App's own replies included) produces nothing, or an agent would answer itself."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from schemas.events import ResultEvent, TaskIntake
from tests.conftest import GITHUB_APP_ID, INSTALLATION_ID, TEAM, Results, eventually, signed_github
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

HUMAN = {"login": "ada", "id": 31, "type": "User"}


def comment_payload(
    *,
    comment_id: int = 8001,
    body: str = "This still fails on Safari.",
    user: dict[str, Any] | None = None,
    sender: dict[str, Any] | None = None,
    on_pull_request: bool = False,
    action: str = "created",
    **comment_fields: Any,
) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "id": 700,
        "number": 12,
        "title": "Login broken",
        "body": "stack trace",
        "state": "open",
        "html_url": "https://github.com/acme/app/issues/12",
        "user": HUMAN,
    }
    if on_pull_request:
        issue["pull_request"] = {"url": "https://api.github.com/repos/acme/app/pulls/12"}
    author = user or HUMAN
    return {
        "action": action,
        "issue": issue,
        "comment": {
            "id": comment_id,
            "body": body,
            "html_url": f"https://github.com/acme/app/issues/12#issuecomment-{comment_id}",
            "user": author,
            **comment_fields,
        },
        "repository": {"id": 9001, "full_name": "acme/app", "private": True},
        "installation": {"id": INSTALLATION_ID},
        "sender": sender or author,
    }


async def _deliver(runtime: Runtime, ingress: httpx.AsyncClient, payload: dict[str, Any]) -> str:
    body, headers = signed_github("issue_comment", payload)
    response = await ingress.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 202, response.text
    envelope_id = str(response.json()["id"])
    await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", envelope_id))
    return envelope_id


async def test_a_persons_comments_on_an_issue_and_a_pull_request_become_intake(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, results: Results, github_integration: object
) -> None:
    on_issue = await _deliver(runtime, ingress, comment_payload())
    on_pr = await _deliver(
        runtime, ingress, comment_payload(comment_id=8002, body="LGTM after the fix", on_pull_request=True)
    )

    events = {e["causation_id"]: e for e in await results.wait_for("task.intake", count=2)}
    first = ResultEvent[TaskIntake].model_validate(events[on_issue])
    assert first.team_id == TEAM
    assert first.data.source == "github" and first.data.source_id == "comment:8001"
    assert first.data.kind == "issue_comment" and first.data.action == "created"
    assert first.data.title == "Comment on #12: Login broken"
    assert first.data.body == "This still fails on Safari."
    assert first.data.author == "ada" and first.data.author_external_id == "31"
    assert first.data.url == "https://github.com/acme/app/issues/12#issuecomment-8001"
    assert first.data.metadata == {"repository": "acme/app", "number": 12, "issue_id": 700}
    second = ResultEvent[TaskIntake].model_validate(events[on_pr])
    assert second.data.kind == "pull_request_comment" and second.data.source_id == "comment:8002"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(comment_payload(user={"login": "renovate", "id": 2, "type": "Bot"}), id="author-type-bot"),
        pytest.param(comment_payload(user={"login": "dependabot[bot]", "id": 3, "type": "User"}), id="bot-login"),
        pytest.param(comment_payload(sender={"login": "ci-app[bot]", "id": 4, "type": "Bot"}), id="sender-bot"),
        pytest.param(
            # this App, commenting with a person's own token: GitHub names the App that did it
            comment_payload(performed_via_github_app={"id": int(GITHUB_APP_ID), "slug": "our-app"}),
            id="through-this-app",
        ),
        pytest.param(
            comment_payload(body="Deployed.\n\n<!-- integration-worker:tool:1234 -->"), id="the-workers-marker"
        ),
    ],
)
async def test_a_bots_comment_is_not_intake(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    github_integration: object,
    payload: dict[str, Any],
) -> None:
    await _deliver(runtime, ingress, payload)

    await results.all_in(runtime)
    assert results.of("task.intake") == []
    assert await runtime.pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_comment_made_through_another_app_by_a_person_is_intake(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, results: Results, github_integration: object
) -> None:
    # GitHub Mobile, say: an App performed it, but a person wrote it
    await _deliver(runtime, ingress, comment_payload(performed_via_github_app={"id": 99, "slug": "github-mobile"}))

    [event] = await results.wait_for("task.intake")
    assert event["data"]["author"] == "ada"
