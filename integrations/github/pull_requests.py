"""`pull_request`: keep `github_pull_requests` in step (as MIMRAI's pr_reviews) and turn magic
words into `task.status_change` events.

Events can arrive out of order (redeliveries): a payload older than the stored row changes
nothing. Each (pull request, task, status) is published once, not on every push, even when
several events of one pull request are handled at the same time (`ctx.emit(..., once=...)`);
events carry the pull request's `updated_at`, the order to apply them in.
"""

from __future__ import annotations

from typing import Any

from integrations.github import magic_words, pr_comments
from integrations.github.payloads import PullRequest, PullRequestEvent, User
from integrations.github.users import platform_users
from schemas.events import PullRequestPerson, TaskStatusChange
from worker.sdk import Context

UPSERT = """
    INSERT INTO github_pull_requests AS pr (team_id, integration_id, external_id, repository_id, repository, number,
        title, body, state, draft, merged, status, url, author_login, assignees, reviewers, magic_actions, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
    ON CONFLICT (integration_id, external_id) DO UPDATE SET
        title = EXCLUDED.title, body = EXCLUDED.body, state = EXCLUDED.state, draft = EXCLUDED.draft,
        merged = EXCLUDED.merged, status = EXCLUDED.status, url = EXCLUDED.url, assignees = EXCLUDED.assignees,
        reviewers = EXCLUDED.reviewers, magic_actions = EXCLUDED.magic_actions, updated_at = EXCLUDED.updated_at,
        repository = EXCLUDED.repository, synced_at = now()
    WHERE pr.updated_at <= EXCLUDED.updated_at"""


def review_status(pr: PullRequest) -> str:
    """MIMRAI's derivation: merged -> approved, closed -> closed, draft -> pending,
    reviewers requested -> review_requested, else pending."""
    if pr.merged or pr.merged_at is not None:
        return "approved"
    if pr.state == "closed":
        return "closed"
    if pr.draft:
        return "pending"
    if pr.requested_reviewers:
        return "review_requested"
    return "pending"


def _people(users: list[User], user_ids: dict[int, str]) -> list[dict[str, Any]]:
    return [{"name": u.login, "avatarUrl": u.avatar_url, "userId": user_ids.get(u.id)} for u in users]


def _persons(users: list[User], user_ids: dict[int, str]) -> list[PullRequestPerson]:
    return [PullRequestPerson(login=u.login, external_user_id=str(u.id), user_id=user_ids.get(u.id)) for u in users]


async def handle(ctx: Context) -> None:
    assert ctx.integration is not None
    event = ctx.payload_as(PullRequestEvent)
    pr = event.pull_request
    previous = await ctx.db.lookup(
        "github_pull_requests", {"integration_id": ctx.integration.id, "external_id": pr.id}, ["updated_at"]
    )
    if previous is not None and previous["updated_at"] > pr.updated_at:
        ctx.log.info("older pull_request event ignored", number=pr.number, action=event.action)
        return
    status = review_status(pr)
    merged = pr.merged or pr.merged_at is not None
    actions = magic_words.extract(
        pr.title, pr.body, merged=merged, review_status=status, has_reviewers=bool(pr.requested_reviewers)
    )
    # GitHub user id -> platform user, through the people's links (integrations/github/users.py),
    # for assignees and reviewers (MIMRAI's mapping); none: no query (most events of the hot path)
    user_ids = await platform_users(ctx, (*pr.assignees, *pr.requested_reviewers))
    ctx.db.write(
        UPSERT,
        ctx.integration.id,
        pr.id,
        event.repository.id,
        event.repository.full_name,
        pr.number,
        pr.title,
        pr.body,
        pr.state,
        pr.draft,
        merged,
        status,
        pr.html_url,
        pr.user.login if pr.user else None,
        _people(pr.assignees, user_ids),
        _people(pr.requested_reviewers, user_ids),
        [a.key for a in actions],
        pr.updated_at,
    )
    people: tuple[PullRequestPerson | None, list[PullRequestPerson], list[PullRequestPerson]] | None = None
    for action in actions:
        once = f"pr:{ctx.integration.id}:{pr.id}:{action.key}"
        if ctx.sent_once(once):  # most updates of a pull request: its status change went out already
            continue
        if people is None:
            author = _persons([pr.user], user_ids)[0] if pr.user else None
            people = (author, _persons(pr.assignees, user_ids), _persons(pr.requested_reviewers, user_ids))
        ctx.emit(
            TaskStatusChange(
                task_ref=action.task_ref,
                prefix=action.prefix,
                sequence=action.sequence,
                status=action.status,
                magic_word=action.magic_word,
                pull_request_url=pr.html_url,
                pull_request_number=pr.number,
                pull_request_updated_at=pr.updated_at,
                repository=event.repository.full_name,
                merged=merged,
                author=people[0],
                assignees=people[1],
                reviewers=people[2],
            ),
            once=once,
        )
    pr_comments.stage(ctx, event, actions)  # the task's link on the pull request, once per task
