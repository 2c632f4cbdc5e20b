"""GitHub's read tools for agents, and connecting a repository (MIMRAI's repository connection
with its `sync-team-pr-reviews` backfill). Each is an action: a command, an agent tool, a CLI entry.

Every call goes to GitHub as the installation (`client.py`), listings page by page (100 a page,
following the `Link` header). A repository the installation cannot reach is a refusal that says
so, not a failure: GitHub answers 404 for it, as it does for one that does not exist.

Connecting stores a row of `github_connected_repositories` and stages one command
`github.command.sync_pull_request` per open pull request (most recently updated first): each runs
the `pull_request` webhook's own handler as its own unit of work, with the worker's retries, so
the rows, review status and magic words of those pull requests are as if their webhooks had
come. An older snapshot never overwrites a newer row (the handler compares `updated_at`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from integrations.github.client import api, paginate
from integrations.github.config import GithubConfig
from integrations.github.payloads import PullRequest
from schemas.tools import USER_HEADER
from worker.sdk import ActionRefused, Context, ProviderError, derived_id

SYNC_COMMAND = "sync_pull_request"
REPOSITORY_PATTERN = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"

ReviewDecision = Literal["approved", "changes_requested", "review_requested", "reviewed", "none"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _RepositoryInput(_Input):
    repository: str = Field(pattern=REPOSITORY_PATTERN, description="The repository, as owner/name.")

    @field_validator("repository")
    @classmethod
    def _no_dot_segments(cls, value: str) -> str:
        if any(part in (".", "..") for part in value.split("/")):
            raise ValueError("owner and name cannot be . or ..")  # it would leave /repos/ in the path
        return value


# --- models ---------------------------------------------------------------------------------------


class ListRepositoriesInput(_Input):
    pass


class RepositoryInfo(BaseModel):
    id: int = Field(description="GitHub's repository id.")
    full_name: str = Field(description="owner/name.")
    private: bool = Field(description="Whether the repository is private.")
    default_branch: str | None = Field(default=None, description="The default branch, e.g. main.")
    url: str | None = Field(default=None, description="The repository's page on GitHub.")
    connected: bool = Field(description="Whether the team connected it (its pull requests were backfilled).")


class ListRepositoriesOutput(BaseModel):
    repositories: list[RepositoryInfo] = Field(description="Every repository the GitHub App installation can see.")


class ListBranchesInput(_RepositoryInput):
    limit: int = Field(default=1000, ge=1, le=5000, description="At most this many branches.")


class BranchInfo(BaseModel):
    name: str = Field(description="The branch name.")
    sha: str | None = Field(default=None, description="The commit the branch points at.")
    protected: bool = Field(default=False, description="Whether branch protection applies.")


class ListBranchesOutput(BaseModel):
    branches: list[BranchInfo] = Field(description="The repository's branches, in GitHub's order.")
    truncated: bool = Field(description="True when the repository has more than `limit` branches.")


class ListPullRequestsInput(_RepositoryInput):
    limit: int = Field(default=100, ge=1, le=1000, description="At most this many pull requests.")


class PullRequestSummary(BaseModel):
    number: int = Field(description="The pull request's number.")
    title: str = Field(description="Its title.")
    url: str = Field(description="Its page on GitHub.")
    author: str | None = Field(default=None, description="The author's GitHub login.")
    draft: bool = Field(default=False, description="Whether it is a draft.")
    head: str | None = Field(default=None, description="The branch with the changes.")
    base: str | None = Field(default=None, description="The branch it merges into.")
    requested_reviewers: list[str] = Field(default_factory=list, description="Logins asked to review.")
    updated_at: datetime = Field(description="When it last changed.")


class ListPullRequestsOutput(BaseModel):
    pull_requests: list[PullRequestSummary] = Field(description="Open pull requests, most recently updated first.")
    truncated: bool = Field(description="True when there are more than `limit` open pull requests.")


class PullRequestStatusInput(_RepositoryInput):
    number: int = Field(gt=0, description="The pull request's number.")


class PullRequestStatusOutput(BaseModel):
    number: int = Field(description="The pull request's number.")
    title: str = Field(description="Its title.")
    url: str = Field(description="Its page on GitHub.")
    state: Literal["open", "closed", "merged"] = Field(description="open, closed (unmerged) or merged.")
    draft: bool = Field(description="Whether it is a draft.")
    author: str | None = Field(default=None, description="The author's GitHub login.")
    head: str | None = Field(default=None, description="The branch with the changes.")
    base: str | None = Field(default=None, description="The branch it merges into.")
    review_decision: ReviewDecision = Field(
        description="changes_requested: someone's latest review asks for changes; approved: approved, nobody "
        "pending; review_requested: reviewers still pending; reviewed: comments only; none: no review asked."
    )
    approved_by: list[str] = Field(description="Logins whose latest review approves.")
    changes_requested_by: list[str] = Field(description="Logins whose latest review requests changes.")
    commented_by: list[str] = Field(description="Logins who only commented in reviews.")
    pending_reviewers: list[str] = Field(description="Logins (and org/team slugs) asked to review who have not yet.")


class ConnectRepositoryInput(_RepositoryInput):
    backfill_limit: int = Field(
        default=100,
        ge=0,
        le=1000,
        description="Open pull requests to sync now, most recently updated first (0: none).",
    )


class ConnectRepositoryOutput(BaseModel):
    repository: str = Field(description="owner/name, as GitHub spells it.")
    repository_id: int = Field(description="GitHub's repository id.")
    already_connected: bool = Field(description="True when the team had connected it before.")
    pull_requests_queued: int = Field(description="Open pull requests queued for syncing, each its own unit of work.")


# --- GitHub, with refusals for what the installation cannot reach --------------------------------------


def _installation(ctx: Context) -> int:
    return ctx.config_as(GithubConfig).installation_id


def _unreachable(repository: str) -> ActionRefused:
    return ActionRefused(
        f"repository {repository} is not one this GitHub installation can reach "
        "(it does not exist, or the App was not given access to it)",
        {"repository": ["not reachable by this GitHub installation"]},
    )


async def _get(ctx: Context, repository: str, path: str) -> Any:
    try:
        return (await api(ctx, _installation(ctx), "GET", path)).json()
    except ProviderError as exc:
        if exc.status in (403, 404):
            raise _unreachable(repository) from None
        raise


async def _list(ctx: Context, repository: str, path: str, **kwargs: Any) -> list[Any]:
    try:
        return await paginate(ctx, _installation(ctx), path, **kwargs)
    except ProviderError as exc:
        if exc.status in (403, 404):
            raise _unreachable(repository) from None
        raise


async def _connected_ids(ctx: Context) -> set[int]:
    assert ctx.integration is not None
    rows = await ctx.db.fetch(
        "SELECT repository_id FROM github_connected_repositories WHERE team_id = $1 AND integration_id = $2",
        ctx.integration.id,
    )
    return {int(r["repository_id"]) for r in rows}


# --- the actions ------------------------------------------------------------------------------------


async def list_repositories(ctx: Context, _request: ListRepositoriesInput) -> ListRepositoriesOutput:
    repos = await paginate(ctx, _installation(ctx), "/installation/repositories", key="repositories")
    connected = await _connected_ids(ctx)
    return ListRepositoriesOutput(
        repositories=[
            RepositoryInfo(
                id=r["id"],
                full_name=r["full_name"],
                private=bool(r.get("private", False)),
                default_branch=r.get("default_branch"),
                url=r.get("html_url"),
                connected=r["id"] in connected,
            )
            for r in repos
        ]
    )


async def list_branches(ctx: Context, request: ListBranchesInput) -> ListBranchesOutput:
    found = await _list(ctx, request.repository, f"/repos/{request.repository}/branches", limit=request.limit + 1)
    return ListBranchesOutput(
        branches=[
            BranchInfo(
                name=b["name"],
                sha=(b.get("commit") or {}).get("sha"),
                protected=bool(b.get("protected", False)),
            )
            for b in found[: request.limit]
        ],
        truncated=len(found) > request.limit,
    )


def _open_pulls_params() -> dict[str, str]:
    return {"state": "open", "sort": "updated", "direction": "desc"}


def _login(user: Any) -> str | None:
    return str(user["login"]) if isinstance(user, dict) and user.get("login") else None


def _ref(pr: dict[str, Any], side: str) -> str | None:
    branch = pr.get(side)
    return str(branch["ref"]) if isinstance(branch, dict) and branch.get("ref") else None


async def list_pull_requests(ctx: Context, request: ListPullRequestsInput) -> ListPullRequestsOutput:
    found = await _list(
        ctx,
        request.repository,
        f"/repos/{request.repository}/pulls",
        params=_open_pulls_params(),
        limit=request.limit + 1,
    )
    return ListPullRequestsOutput(
        pull_requests=[
            PullRequestSummary(
                number=pr["number"],
                title=pr["title"],
                url=pr["html_url"],
                author=_login(pr.get("user")),
                draft=bool(pr.get("draft", False)),
                head=_ref(pr, "head"),
                base=_ref(pr, "base"),
                requested_reviewers=[login for u in pr.get("requested_reviewers") or [] if (login := _login(u))],
                updated_at=pr["updated_at"],
            )
            for pr in found[: request.limit]
        ],
        truncated=len(found) > request.limit,
    )


def summarise_reviews(
    reviews: list[dict[str, Any]], pending: list[str]
) -> tuple[ReviewDecision, list[str], list[str], list[str]]:
    """GitHub's reading of reviews: each reviewer's latest approving or change-requesting review
    counts (a later comment does not undo it; a dismissal does); a reviewer asked again is pending.
    Returns (decision, approved_by, changes_requested_by, commented_by)."""
    decisive: dict[str, str] = {}
    commented: list[str] = []
    for review in sorted(reviews, key=lambda r: (r.get("submitted_at") or "", r.get("id") or 0)):
        login, state = _login(review.get("user")), str(review.get("state", "")).upper()
        if login is None:
            continue
        if state in ("APPROVED", "CHANGES_REQUESTED"):
            decisive[login] = state
        elif state == "DISMISSED":
            decisive.pop(login, None)
        elif state == "COMMENTED" and login not in commented:
            commented.append(login)
    asked_again = set(pending)
    approved = sorted(u for u, s in decisive.items() if s == "APPROVED" and u not in asked_again)
    changes = sorted(u for u, s in decisive.items() if s == "CHANGES_REQUESTED" and u not in asked_again)
    commented_only = sorted(u for u in commented if u not in decisive and u not in asked_again)
    decision: ReviewDecision
    if changes:
        decision = "changes_requested"
    elif pending:
        decision = "review_requested"
    elif approved:
        decision = "approved"
    elif commented_only:
        decision = "reviewed"
    else:
        decision = "none"
    return decision, approved, changes, commented_only


async def pull_request_status(ctx: Context, request: PullRequestStatusInput) -> PullRequestStatusOutput:
    base = f"/repos/{request.repository}/pulls/{request.number}"
    try:
        pr = await _get(ctx, request.repository, base)
    except ActionRefused:
        await _get(ctx, request.repository, f"/repos/{request.repository}")  # refuses if the repository is out of reach
        raise ActionRefused(
            f"{request.repository} has no pull request #{request.number}",
            {"number": ["no such pull request"]},
        ) from None
    reviews = await _list(ctx, request.repository, f"{base}/reviews")
    requested = await _get(ctx, request.repository, f"{base}/requested_reviewers")
    pending = [login for u in requested.get("users") or [] if (login := _login(u))]
    pending += [
        f"{(t.get('organization') or {}).get('login') or 'team'}/{t['slug']}"
        for t in requested.get("teams") or []
        if t.get("slug")
    ]
    decision, approved, changes, commented = summarise_reviews(reviews, pending)
    merged = bool(pr.get("merged")) or pr.get("merged_at") is not None
    return PullRequestStatusOutput(
        number=pr["number"],
        title=pr["title"],
        url=pr["html_url"],
        state="merged" if merged else ("closed" if pr["state"] == "closed" else "open"),
        draft=bool(pr.get("draft", False)),
        author=_login(pr.get("user")),
        head=_ref(pr, "head"),
        base=_ref(pr, "base"),
        review_decision=decision,
        approved_by=approved,
        changes_requested_by=changes,
        commented_by=commented,
        pending_reviewers=pending,
    )


CONNECT = """
    INSERT INTO github_connected_repositories (team_id, integration_id, repository_id, full_name, connected_by)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (integration_id, repository_id) DO UPDATE SET full_name = EXCLUDED.full_name"""


async def connect_repository(ctx: Context, request: ConnectRepositoryInput) -> ConnectRepositoryOutput:
    assert ctx.integration is not None
    repo = await _get(ctx, request.repository, f"/repos/{request.repository}")
    repository_id, full_name = int(repo["id"]), str(repo["full_name"])
    already = repository_id in await _connected_ids(ctx)
    ctx.db.write(CONNECT, ctx.integration.id, repository_id, full_name, ctx.envelope.headers.get(USER_HEADER) or None)
    pulls: list[Any] = []
    if request.backfill_limit:
        pulls = await _list(
            ctx,
            request.repository,
            f"/repos/{full_name}/pulls",
            params=_open_pulls_params(),
            limit=request.backfill_limit,
        )
    repository = {"id": repository_id, "full_name": full_name, "private": bool(repo.get("private", False))}
    fields = PullRequest.model_fields
    for pr in pulls:  # each its own unit of work: the pull_request webhook's handler, as if it had come
        ctx.publish(
            "command",
            SYNC_COMMAND,
            {
                "action": "backfill",
                "number": pr["number"],
                "pull_request": {k: v for k, v in pr.items() if k in fields},
                "repository": repository,
            },
            id=derived_id(ctx.envelope.id, SYNC_COMMAND, str(pr["id"])),
        )
    ctx.record(
        "info",
        "repository_connected",
        f"connected {full_name}; {len(pulls)} open pull request(s) queued for syncing",
        details={"repository_id": repository_id, "pull_requests": len(pulls)},
    )
    return ConnectRepositoryOutput(
        repository=full_name,
        repository_id=repository_id,
        already_connected=already,
        pull_requests_queued=len(pulls),
    )
