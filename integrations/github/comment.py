"""Action `comment`: comment on an issue or pull request, as the App's installation, or as the
calling user (envelope header `x-user-id`, a tool call's user) when they linked their GitHub
account and the repository is one of the team's installation's (`github_repositories`): then the
comment is theirs, posted with their own token. A user token reaches every installation of the
App the person can access, other teams' included, so it is never used outside this team's. Where
GitHub refuses the user's token (no access to the repository: 403/404) or the link needs
reconnecting, the App comments instead.

The comment carries an invisible marker with the command's id; a retried command
first looks for its marker, so a comment posted just before a crash is not posted twice. The
POST itself is sent once (no inline retry): when its answer is lost, the message's retry looks
for the marker first.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field

from integrations.github.client import api, paginate
from integrations.github.config import GithubConfig
from integrations.github.tools import _RepositoryInput
from integrations.github.users import user_api
from schemas.tools import USER_HEADER
from worker.sdk import Context, Link, LinkNeedsReconnect, ProviderError, redact


class CommentInput(_RepositoryInput):
    issue_number: int = Field(gt=0, description="The issue or pull request number.")
    body: str = Field(min_length=1, max_length=60000, description="Markdown.")


class CommentOutput(BaseModel):
    id: int = Field(description="GitHub's id of the comment.")
    url: str = Field(description="The comment's page on GitHub.")
    posted_as: Literal["app", "user"] = Field(
        default="app", description="`user`: with the calling user's own GitHub account (they linked it)."
    )


MARKER_PREFIX = "<!-- integration-worker:"


def marker(command_id: str) -> str:
    return f"{MARKER_PREFIX}{command_id} -->"


async def post_once(
    ctx: Context, installation_id: int, repository: str, number: int, body: str, *, link_id: str | None = None
) -> CommentOutput:
    """Comment as the installation (or as the user of `link_id`) with this message's marker; a
    repeat of the message (a retry, a redelivery) first looks for the marker, so a comment posted
    just before a failure or a crash is not posted twice."""
    path = f"/repos/{repository}/issues/{number}/comments"
    tag = marker(ctx.envelope.id)
    if ctx.is_repeat:  # a previous run may have posted it before failing or crashing
        since = (ctx.envelope.created_at - timedelta(minutes=1)).isoformat()
        for comment in await paginate(ctx, installation_id, path, params={"since": since}):
            if tag in (comment.get("body") or ""):
                author = comment.get("user")
                by_app = isinstance(author, dict) and author.get("type") == "Bot"
                return CommentOutput(id=comment["id"], url=comment["html_url"], posted_as="app" if by_app else "user")
    payload = {"body": f"{body}\n\n{tag}"}
    # sent once: GitHub may have stored a comment whose answer was lost (a 5xx, a dropped
    # connection), so only the message's retry, which looks for the marker first, sends it again
    if link_id is not None:
        response = await user_api(ctx, link_id, "POST", path, json=payload, attempts=1)
    else:
        response = await api(ctx, installation_id, "POST", path, json=payload, attempts=1)
    posted = response.json()
    return CommentOutput(id=posted["id"], url=posted["html_url"], posted_as="user" if link_id else "app")


async def calling_user_link(ctx: Context) -> Link | None:
    """The active link of the user the action is called for, if they linked their GitHub account."""
    user_id = ctx.envelope.headers.get(USER_HEADER)
    if not user_id:
        return None
    links = await ctx.links.all(user_ids=[user_id])
    return links[0] if links else None


async def in_installation(ctx: Context, repository: str) -> bool:
    """Whether the repository is one of this team's installation's (`github_repositories`)."""
    assert ctx.integration is not None
    found = await ctx.db.lookup(
        "github_repositories", {"integration_id": ctx.integration.id, "full_name": repository}, ["repository_id"]
    )
    return found is not None


async def run(ctx: Context, request: CommentInput) -> CommentOutput:
    installation_id = ctx.config_as(GithubConfig).installation_id
    link = await calling_user_link(ctx)
    if link is not None and not await in_installation(ctx, request.repository):
        ctx.log.info("the repository is not the installation's: commenting as the App", repository=request.repository)
        link = None
    if link is not None:
        try:
            output = await post_once(
                ctx, installation_id, request.repository, request.issue_number, request.body, link_id=link.id
            )
        except (ProviderError, LinkNeedsReconnect) as exc:
            if isinstance(exc, ProviderError) and exc.status not in (403, 404):
                raise
            ctx.log.info("the user's GitHub token cannot comment there: commenting as the App", reason=redact(str(exc)))
        else:
            if output.posted_as == "app":  # a repeat found the App's comment of an earlier run
                ctx.record("info", "comment_posted", f"commented on {request.repository}#{request.issue_number}")
                return output
            ctx.user_link = link  # the action's log row names the link
            ctx.record(
                "info",
                "comment_posted",
                f"commented on {request.repository}#{request.issue_number} as {link.external_user_name}",
            )
            return output
    output = await post_once(ctx, installation_id, request.repository, request.issue_number, request.body)
    ctx.record("info", "comment_posted", f"commented on {request.repository}#{request.issue_number}")
    return output
