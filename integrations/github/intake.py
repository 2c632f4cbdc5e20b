"""`issues` and `issue_comment`: publish `task.intake` events for the platform.

Comments written by bots (this App's own replies included) are not intake: that
would loop an agent's answer back to it. A bot is an author or sender of type `Bot` or with a
`[bot]` login, a comment GitHub says an App performed when that App is this one (its comments
posted with a user's token too), or a comment carrying the worker's own marker.
"""

from __future__ import annotations

from integrations.github.comment import MARKER_PREFIX
from integrations.github.config import GithubSettings
from integrations.github.payloads import IssueCommentEvent, IssuesEvent, User
from schemas.events import TaskIntake
from worker.sdk import Context


async def _linked_user(ctx: Context, user: User | None) -> str | None:
    if user is None or ctx.integration is None:
        return None
    link = await ctx.links.find(str(user.id))
    return link.user_id if link is not None else None


async def on_issue(ctx: Context) -> None:
    event = ctx.payload_as(IssuesEvent)
    issue = event.issue
    ctx.emit(
        TaskIntake(
            source="github",
            source_id=f"issue:{issue.id}",
            kind="issue",
            action=event.action,
            title=issue.title,
            body=issue.body or "",
            url=issue.html_url,
            author=issue.user.login if issue.user else None,
            author_external_id=str(issue.user.id) if issue.user else None,
            user_id=await _linked_user(ctx, issue.user),
            metadata={
                "repository": event.repository.full_name,
                "number": issue.number,
                "state": issue.state,
                "labels": [label.name for label in issue.labels],
            },
        )
    )


def _is_bot(user: User | None) -> bool:
    return user is not None and (user.type == "Bot" or user.login.endswith("[bot]"))


def not_intake(ctx: Context, event: IssueCommentEvent) -> str | None:
    """Why this comment is not intake (a bot's, this App's, the worker's own), or None."""
    comment = event.comment
    if _is_bot(comment.user) or _is_bot(event.sender):
        return "written by a bot"
    app = comment.performed_via_github_app
    if app is not None:
        settings = ctx.settings_as(GithubSettings)
        ours = {value for value in (settings.app_id, settings.app_slug, settings.client_id) if value}
        if ours & {str(app.id) if app.id is not None else None, app.slug, app.client_id}:
            return "written through this App"
    if MARKER_PREFIX in (comment.body or ""):
        return "posted by this worker"
    return None


async def on_issue_comment(ctx: Context) -> None:
    event = ctx.payload_as(IssueCommentEvent)
    comment, issue = event.comment, event.issue
    reason = not_intake(ctx, event)
    if reason is not None:
        ctx.log.info("comment is not intake", reason=reason, author=comment.user.login if comment.user else None)
        return
    on_pull_request = issue.pull_request is not None
    ctx.emit(
        TaskIntake(
            source="github",
            source_id=f"comment:{comment.id}",
            kind="pull_request_comment" if on_pull_request else "issue_comment",
            action=event.action,
            title=f"Comment on #{issue.number}: {issue.title}",
            body=comment.body or "",
            url=comment.html_url,
            author=comment.user.login if comment.user else None,
            author_external_id=str(comment.user.id) if comment.user else None,
            user_id=await _linked_user(ctx, comment.user),
            metadata={"repository": event.repository.full_name, "number": issue.number, "issue_id": issue.id},
        )
    )
