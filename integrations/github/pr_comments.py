"""The pull request comment after a magic word (as MIMRAI did): when `fixes ABC-12` moves a task,
the App comments on the pull request with the task's link, once per (pull request, task).

The `pull_request` handler stages the command `github.command.pull_request_task_comment` with
`ctx.publish(..., once=key)`: the key is claimed in the handler's transaction, so redeliveries,
later edits and events of one pull request handled side by side publish it once, ever. The
command is its own unit of work (GitHub's failures are retried without re-running the
webhook); its deterministic id carries the comment's marker, so a retry after the comment was
posted but before the commit finds it instead of commenting again (`comment.post_once`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from integrations.github.comment import post_once
from integrations.github.config import GithubConfig, GithubSettings
from integrations.github.magic_words import MagicAction
from integrations.github.payloads import PullRequestEvent
from worker.sdk import Context

COMMAND = "pull_request_task_comment"


class TaskComment(BaseModel):
    """The command's payload: which pull request, which task, which word moved it."""

    model_config = ConfigDict(extra="forbid")

    repository: str = Field(description="owner/name")
    pull_request_id: int
    pull_request_number: int = Field(gt=0)
    task_ref: str
    prefix: str
    sequence: int
    magic_word: str


def once_key(integration_id: str, pull_request_id: int, task_ref: str) -> str:
    return f"pr-task-comment:{integration_id}:{pull_request_id}:{task_ref}"


def stage(ctx: Context, event: PullRequestEvent, actions: list[MagicAction]) -> None:
    """One comment command per task the pull request names (the first word naming it wins)."""
    assert ctx.integration is not None
    if not ctx.config_as(GithubConfig).task_comments:
        return
    pr = event.pull_request
    seen: set[str] = set()
    for action in actions:
        if action.task_ref in seen:  # named twice (`refs ABC-12 ... fixes ABC-12`): one comment
            continue
        seen.add(action.task_ref)
        key = once_key(ctx.integration.id, pr.id, action.task_ref)
        if ctx.sent_once(key):  # most updates of a pull request: its comment went out already
            continue
        payload = TaskComment(
            repository=event.repository.full_name,
            pull_request_id=pr.id,
            pull_request_number=pr.number,
            task_ref=action.task_ref,
            prefix=action.prefix,
            sequence=action.sequence,
            magic_word=action.magic_word,
        )
        ctx.publish("command", COMMAND, payload.model_dump(mode="json"), id=f"github:{key}", once=key)


def body(ctx: Context, command: TaskComment) -> str:
    """MIMRAI's comment: `- <word> [PREFIX-N](task URL)`."""
    settings = ctx.settings_as(GithubSettings)
    url = settings.task_link(
        ctx.runtime_settings.platform_url,
        team_id=ctx.team_id,
        task_ref=command.task_ref,
        prefix=command.prefix,
        sequence=command.sequence,
    )
    return f"- {command.magic_word} [{command.task_ref}]({url})"


async def handle(ctx: Context) -> None:
    command = ctx.payload_as(TaskComment)
    installation_id = ctx.config_as(GithubConfig).installation_id
    posted = await post_once(ctx, installation_id, command.repository, command.pull_request_number, body(ctx, command))
    ctx.record(
        "info",
        "task_linked",
        f"linked {command.task_ref} on {command.repository}#{command.pull_request_number}",
        details={"comment_id": posted.id, "task_ref": command.task_ref},
    )
