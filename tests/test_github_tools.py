"""GitHub's agent tools, called as an agent calls them (the HTTP tool API, through the worker),
against the fake GitHub: repositories, branches, open pull requests, a pull request's review
status, and connecting a repository with the backfill of its open pull requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from integrations.github.tools import summarise_reviews
from tests.conftest import INSTALLATION_ID, TEAM, Results, eventually
from tests.fakes.github import FakeGitHubState
from worker.cli.serve import create_app
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

OUTSIDE = "other-org/secret"  # exists on GitHub, maybe, but not for this installation


@pytest.fixture
async def agent(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The tool API as an agent's backend calls it (IW_SERVICE_TOKEN)."""
    assert runtime.settings.service_token is not None
    headers = {"Authorization": f"Bearer {runtime.settings.service_token.get_secret_value()}"}
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as client:
        yield client


async def call(agent: httpx.AsyncClient, tool: str, **arguments: Any) -> httpx.Response:
    return await agent.post(f"/tools/github_{tool}/call", json={"team_id": TEAM, "arguments": arguments})


async def succeeded(agent: httpx.AsyncClient, tool: str, **arguments: Any) -> dict[str, Any]:
    response = await call(agent, tool, **arguments)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "succeeded", answer
    return dict(answer["output"])


def pr(
    number: int,
    updated_at: str,
    *,
    title: str | None = None,
    body: str = "",
    state: str = "open",
    reviewers: tuple[str, ...] = (),
    draft: bool = False,
) -> dict[str, Any]:
    """A pull request as GitHub's REST API returns it (the parts that matter here)."""
    return {
        "id": 70000 + number,
        "number": number,
        "title": title or f"Change {number}",
        "body": body,
        "state": state,
        "draft": draft,
        "merged_at": None,
        "html_url": f"https://github.com/acme/app/pull/{number}",
        "user": {"login": "octocat", "id": 1, "type": "User"},
        "assignees": [],
        "requested_reviewers": [{"login": r, "id": 200 + i, "type": "User"} for i, r in enumerate(reviewers)],
        "head": {"ref": f"feature-{number}", "sha": f"{number:040x}"},
        "base": {"ref": "main", "sha": "0" * 40},
        "updated_at": updated_at,
    }


def listed(github: FakeGitHubState, path: str) -> list[dict[str, str]]:
    return [query for p, query in github.listings if p == path]


async def test_the_tools_are_in_the_teams_catalog_with_described_schemas(
    agent: httpx.AsyncClient, github_integration: object
) -> None:
    response = await agent.get("/tools", params={"team_id": TEAM, "format": "mcp"})

    tools = {t["name"]: t for t in response.json()["tools"]}
    assert {
        "github_list_repositories",
        "github_list_branches",
        "github_list_pull_requests",
        "github_pull_request_status",
        "github_connect_repository",
    } <= set(tools)
    status = tools["github_pull_request_status"]
    assert set(status["inputSchema"]["required"]) == {"repository", "number"}
    assert status["inputSchema"]["properties"]["repository"]["description"] == "The repository, as owner/name."
    for prop in status["outputSchema"]["properties"].values():
        assert prop.get("description"), prop


async def test_list_repositories_pages_through_everything_the_installation_sees(
    worker: Worker, agent: httpx.AsyncClient, github: FakeGitHubState, github_integration: object
) -> None:
    github.installations[INSTALLATION_ID] += [
        {"id": 20000 + i, "full_name": f"acme/repo-{i:03d}", "private": False, "default_branch": "main"}
        for i in range(148)
    ]
    github.listings.clear()

    output = await succeeded(agent, "list_repositories")

    names = [r["full_name"] for r in output["repositories"]]
    assert len(names) == 150 and names[:2] == ["acme/app", "acme/docs"] and names[-1] == "acme/repo-147"
    assert all(r["connected"] is False for r in output["repositories"])
    pages = listed(github, "/installation/repositories")
    assert [q.get("page", "1") for q in pages] == ["1", "2"]  # followed the Link header
    assert all(q["per_page"] == "100" for q in pages)


async def test_list_branches_pages_and_says_when_it_stopped_at_the_limit(
    worker: Worker, agent: httpx.AsyncClient, github: FakeGitHubState, github_integration: object
) -> None:
    github.branches["acme/app"] = [
        {"name": f"branch-{i:03d}", "commit": {"sha": f"{i:040x}"}, "protected": i == 0} for i in range(230)
    ]

    everything = await succeeded(agent, "list_branches", repository="acme/app")
    some = await succeeded(agent, "list_branches", repository="acme/app", limit=120)

    assert len(everything["branches"]) == 230 and everything["truncated"] is False
    assert everything["branches"][0] == {"name": "branch-000", "sha": f"{0:040x}", "protected": True}
    assert len(listed(github, "/repos/acme/app/branches")) == 3 + 2  # 100 + 100 + 30, then 100 + 100
    assert len(some["branches"]) == 120 and some["truncated"] is True


async def test_list_pull_requests_gives_the_open_ones_most_recently_updated_first(
    worker: Worker, agent: httpx.AsyncClient, github: FakeGitHubState, github_integration: object
) -> None:
    github.pulls["acme/app"] = [
        pr(1, "2026-11-20T09:00:00Z"),
        pr(2, "2026-11-20T11:00:00Z", reviewers=("alice",), draft=True),
        pr(3, "2026-11-20T12:00:00Z", state="closed"),
        pr(4, "2026-11-20T10:00:00Z"),
    ]

    output = await succeeded(agent, "list_pull_requests", repository="acme/app")

    assert [p["number"] for p in output["pull_requests"]] == [2, 4, 1]
    second = output["pull_requests"][0]
    assert second["requested_reviewers"] == ["alice"] and second["draft"] is True
    assert second["head"] == "feature-2" and second["base"] == "main" and second["author"] == "octocat"
    [query] = listed(github, "/repos/acme/app/pulls")
    assert query == {"state": "open", "sort": "updated", "direction": "desc", "per_page": "100"}


async def test_pull_request_status_summarises_reviews(
    worker: Worker, agent: httpx.AsyncClient, github: FakeGitHubState, github_integration: object
) -> None:
    github.pulls["acme/app"] = [pr(9, "2026-11-20T09:00:00Z", reviewers=("dave",))]
    github.requested_teams[("acme/app", 9)] = [{"slug": "core", "organization": {"login": "acme"}}]

    def review(i: int, login: str, state: str) -> dict[str, Any]:
        return {"id": i, "user": {"login": login}, "state": state, "submitted_at": f"2026-11-20T10:0{i}:00Z"}

    github.reviews[("acme/app", 9)] = [
        review(1, "alice", "APPROVED"),
        review(2, "alice", "COMMENTED"),  # a later comment does not undo the approval
        review(3, "bob", "CHANGES_REQUESTED"),
        review(4, "bob", "DISMISSED"),
        review(5, "carol", "COMMENTED"),
    ]

    waiting = await succeeded(agent, "pull_request_status", repository="acme/app", number=9)

    assert waiting["state"] == "open" and waiting["title"] == "Change 9"
    assert waiting["approved_by"] == ["alice"] and waiting["changes_requested_by"] == []
    assert waiting["commented_by"] == ["carol"]
    assert waiting["pending_reviewers"] == ["dave", "acme/core"]
    assert waiting["review_decision"] == "review_requested"

    github.reviews[("acme/app", 9)].append(review(6, "erin", "CHANGES_REQUESTED"))
    blocked = await succeeded(agent, "pull_request_status", repository="acme/app", number=9)
    assert blocked["review_decision"] == "changes_requested" and blocked["changes_requested_by"] == ["erin"]


def test_review_summary_rules() -> None:
    assert summarise_reviews([], []) == ("none", [], [], [])
    approved = [{"id": 1, "user": {"login": "a"}, "state": "APPROVED", "submitted_at": "2026-01-01T00:00:00Z"}]
    assert summarise_reviews(approved, []) == ("approved", ["a"], [], [])
    assert summarise_reviews(approved, ["a"]) == ("review_requested", [], [], [])  # asked again: pending
    ghost = [{"id": 2, "user": None, "state": "APPROVED"}]  # a deleted account
    assert summarise_reviews(ghost, []) == ("none", [], [], [])


async def test_a_repository_outside_the_installation_is_refused_with_a_clear_answer(
    runtime: Runtime, worker: Worker, agent: httpx.AsyncClient, github: FakeGitHubState, github_integration: object
) -> None:
    github.pulls["acme/app"] = [pr(1, "2026-11-20T09:00:00Z")]

    for tool, arguments in (
        ("list_branches", {"repository": OUTSIDE}),
        ("list_pull_requests", {"repository": OUTSIDE}),
        ("pull_request_status", {"repository": OUTSIDE, "number": 1}),
        ("connect_repository", {"repository": OUTSIDE}),
    ):
        response = await call(agent, tool, **arguments)
        assert response.status_code == 422, (tool, response.text)
        answer = response.json()
        assert answer["status"] == "refused"
        assert f"repository {OUTSIDE} is not one this GitHub installation can reach" in answer["error"]
        assert answer["fields"] == {"repository": ["not reachable by this GitHub installation"]}

    missing = await call(agent, "pull_request_status", repository="acme/app", number=404)
    assert missing.status_code == 422 and missing.json()["fields"] == {"number": ["no such pull request"]}
    assert await runtime.pool.fetchval("SELECT count(*) FROM github_connected_repositories") == 0
    parked = await runtime.pool.fetchval("SELECT count(*) FROM integration_logs WHERE level = 'error'")
    assert parked == 0  # answered, not parked


async def test_connecting_a_repository_backfills_its_open_pull_requests_as_their_webhooks_would(
    runtime: Runtime,
    worker: Worker,
    agent: httpx.AsyncClient,
    results: Results,
    github: FakeGitHubState,
    github_integration: Any,
) -> None:
    github.pulls["acme/app"] = [
        pr(1, "2026-11-20T09:00:00Z", title="Fixes ABC-12: crash on login", reviewers=("alice",)),
        pr(2, "2026-11-20T11:00:00Z", draft=True),
        pr(3, "2026-11-20T12:00:00Z", state="closed"),
        *(pr(n, f"2026-11-19T{n - 10:02d}:00:00Z") for n in range(10, 20)),
    ]

    response = await agent.post(
        "/tools/github_connect_repository/call",
        json={"team_id": TEAM, "user_id": "user-7", "arguments": {"repository": "acme/app"}},
    )

    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output == {
        "repository": "acme/app",
        "repository_id": 9001,
        "already_connected": False,
        "pull_requests_queued": 12,
    }
    row = await runtime.pool.fetchrow("SELECT * FROM github_connected_repositories")
    assert row["full_name"] == "acme/app" and row["team_id"] == TEAM and row["connected_by"] == "user-7"
    assert row["integration_id"] == github_integration.id

    # each open pull request synced by its own command: rows, review status, magic words
    await eventually(lambda: runtime.pool.fetchval("SELECT count(*) = 12 FROM github_pull_requests"))
    rows = {r["number"]: r for r in await runtime.pool.fetch("SELECT * FROM github_pull_requests")}
    assert 3 not in rows
    assert rows[1]["status"] == "review_requested" and rows[1]["repository"] == "acme/app"
    assert rows[2]["draft"] is True and rows[2]["status"] == "pending"
    [moved] = await results.wait_for("task.status_change")
    assert moved["data"]["task_ref"] == "ABC-12" and moved["data"]["status"] == "review"
    await eventually(lambda: len(github.comments) == 1)  # and the task's link on that pull request
    [query] = listed(github, "/repos/acme/app/pulls")
    assert query == {"state": "open", "sort": "updated", "direction": "desc", "per_page": "100"}

    repositories = await succeeded(agent, "list_repositories")
    assert {r["full_name"]: r["connected"] for r in repositories["repositories"]} == {
        "acme/app": True,
        "acme/docs": False,
    }
    again = await succeeded(agent, "connect_repository", repository="acme/app", backfill_limit=0)
    assert again["already_connected"] is True and again["pull_requests_queued"] == 0
    assert await runtime.pool.fetchval("SELECT count(*) FROM github_connected_repositories") == 1


async def test_a_repository_that_is_not_owner_slash_name_is_refused_before_calling_github(
    worker: Worker, agent: httpx.AsyncClient, github: FakeGitHubState, github_integration: object
) -> None:
    github.listings.clear()

    for repository, why in (("acme", "pattern"), ("../..", "cannot be . or .."), ("acme/..", "cannot be . or ..")):
        response = await call(agent, "list_branches", repository=repository)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid input"
        assert why in " ".join(response.json()["fields"]["repository"])
    assert github.listings == []
