"""Action `comment`: comment on an issue or pull request, as the App's installation.

The comment carries an invisible marker with the command's id; a retried command
first looks for its marker, so a comment posted just before a crash is not posted twice.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from integrations.github.client import api
from integrations.github.config import GithubConfig
from worker.sdk import Context


class CommentInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repository: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/name")
    issue_number: int = Field(gt=0, description="The issue or pull request number.")
    body: str = Field(min_length=1, max_length=60000, description="Markdown.")


class CommentOutput(BaseModel):
    id: int
    url: str


def marker(command_id: str) -> str:
    return f"<!-- integration-worker:{command_id} -->"


async def run(ctx: Context, request: CommentInput) -> CommentOutput:
    installation_id = ctx.config_as(GithubConfig).installation_id
    path = f"/repos/{request.repository}/issues/{request.issue_number}/comments"
    tag = marker(ctx.envelope.id)
    if ctx.is_repeat:  # a previous run may have posted it before failing or crashing
        since = (ctx.envelope.created_at - timedelta(minutes=1)).isoformat()
        existing = await api(ctx, installation_id, "GET", path, params={"since": since, "per_page": 100})
        for comment in existing.json():
            if tag in (comment.get("body") or ""):
                return CommentOutput(id=comment["id"], url=comment["html_url"])
    response = await api(ctx, installation_id, "POST", path, json={"body": f"{request.body}\n\n{tag}"})
    body = response.json()
    ctx.record("info", "comment_posted", f"commented on {request.repository}#{request.issue_number}")
    return CommentOutput(id=body["id"], url=body["html_url"])
