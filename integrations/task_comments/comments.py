"""`task-comments.event.comment_created` and `task-comments.command.reply`.

Only a comment that mentions the bot goes on (MIMRAI: `@<system user name>`; here also a mention
by user id when the platform sends `mentions`), never the bot's own. The author is a platform user
already, so no account link is needed: the comment goes through the shared conversation path
(worker/sdk/conversation.py) as conversation `task-{task_id}-thread`, acknowledged with a
`task_comment.reaction` event. The agent's reply command becomes a `task_comment.reply` event.
"""

from __future__ import annotations

import re

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from integrations.task_comments.config import TaskCommentsConfig
from schemas.events import TaskCommentReaction, TaskCommentReply
from worker.sdk import Context, MessageView
from worker.sdk.conversation import IncomingMessage, Replies, Sender, receive, strip_mentions

ACK_EMOJI = "eyes"


def conversation_id(task_id: str) -> str:
    return f"task-{task_id}-thread"


class CommentCreated(BaseModel):
    """The platform's event (MIMRAI's handleTaskComment input names are accepted too)."""

    model_config = ConfigDict(extra="ignore")

    task_id: str = Field(validation_alias=AliasChoices("task_id", "taskId"))
    team_id: str | None = Field(default=None, validation_alias=AliasChoices("team_id", "teamId"))
    author_id: str = Field(validation_alias=AliasChoices("author_id", "user_id", "userId"))
    author_name: str | None = Field(default=None, validation_alias=AliasChoices("author_name", "userName"))
    comment_id: str = Field(validation_alias=AliasChoices("comment_id", "commentId"))
    text: str = Field(validation_alias=AliasChoices("text", "comment"))
    mentions: list[str] = Field(default_factory=list, description="Platform user ids the comment mentions.")


def _mentioned(config: TaskCommentsConfig, comment: CommentCreated) -> bool:
    if config.bot_user_id and config.bot_user_id in comment.mentions:
        return True
    if config.bot_name:
        return re.search(rf"(?<![\w@])@{re.escape(config.bot_name)}(?![\w-])", comment.text, re.IGNORECASE) is not None
    return False


async def on_comment_created(ctx: Context) -> None:
    if ctx.integration is None:
        return  # this team has not turned the assistant on
    config = ctx.config_as(TaskCommentsConfig)
    comment = ctx.payload_as(CommentCreated)
    if comment.author_id == config.bot_user_id or not _mentioned(config, comment):
        return
    text = comment.text
    if config.bot_name:
        text = re.sub(rf"(?<![\w@])@{re.escape(config.bot_name)}(?![\w-])", " ", text, flags=re.IGNORECASE)
    await receive(
        ctx,
        IncomingMessage(
            message_id=comment.comment_id,
            conversation_id=conversation_id(comment.task_id),
            text=strip_mentions(text, []),
            sender=Sender(comment.author_id, comment.author_name, platform_user_id=comment.author_id),
            replies=Replies("reply", {"task_id": comment.task_id, "in_reply_to_comment_id": comment.comment_id}),
            acknowledge=TaskCommentReaction(task_id=comment.task_id, comment_id=comment.comment_id, emoji=ACK_EMOJI),
            metadata={"task_id": comment.task_id, "comment_id": comment.comment_id},
        ),
    )


def by_task(message: MessageView) -> str | None:
    """The task (`task_id`, or MIMRAI's `taskId`)."""
    task = message.payload.get("task_id") or message.payload.get("taskId")
    return str(task) if task else None


class ReplyInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(min_length=1)
    text: str = Field(min_length=1, max_length=20000, description="Markdown.")
    in_reply_to_comment_id: str | None = None


class ReplyOutput(BaseModel):
    task_id: str
    conversation_id: str


async def reply(ctx: Context, request: ReplyInput) -> ReplyOutput:
    ctx.emit(
        TaskCommentReply(
            task_id=request.task_id,
            text=request.text,
            in_reply_to_comment_id=request.in_reply_to_comment_id,
            conversation_id=conversation_id(request.task_id),
        )
    )
    return ReplyOutput(task_id=request.task_id, conversation_id=conversation_id(request.task_id))
