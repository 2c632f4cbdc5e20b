"""Posts that reach the bot (WebSocket `posted`, outgoing webhooks, slash commands), handed to the
shared conversation path (worker/sdk/conversation.py).

A direct message is answered in the same channel; a mention in a channel in its thread
(`root_id`, or the post itself). The association link of a mention in a channel goes to the
person by direct message: posted in the channel, anyone could open it and link the person's
Mattermost account to their own platform account. A linked person's post gets an :eyes: reaction.
A post written in a thread (a `root_id`) carries the thread's earlier posts for the agent, up to
IW_MATTERMOST_THREAD_CONTEXT_MESSAGES (threads.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations.mattermost import api, threads
from integrations.mattermost.config import MattermostSettings
from worker.sdk import AttachmentSource, Context
from worker.sdk.conversation import Command, IncomingMessage, Replies, Sender, Thread, receive, strip_mentions

ACK_EMOJI = "eyes"


class FileInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    name: str | None = None
    mime_type: str | None = None
    size: int | None = None


class PostMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    files: list[FileInfo] = Field(default_factory=list)


class Post(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    channel_id: str
    user_id: str
    message: str = ""
    root_id: str = ""
    file_ids: list[str] | None = None
    metadata: PostMetadata = Field(default_factory=PostMetadata)


class Posted(BaseModel):
    model_config = ConfigDict(extra="ignore")

    post: Post
    channel_type: str | None = None
    sender_name: str | None = None
    mentions: list[str] = Field(default_factory=list)
    bot_user_id: str
    bot_username: str = ""


def _files(post: Post) -> list[AttachmentSource]:
    if post.metadata.files:
        return [AttachmentSource(f.id, f.name, f.mime_type, f.size) for f in post.metadata.files]
    return [AttachmentSource(file_id) for file_id in post.file_ids or []]


async def on_posted(ctx: Context) -> None:
    event = ctx.payload_as(Posted)
    post = event.post
    is_direct = event.channel_type == "D"
    if post.user_id == event.bot_user_id or not (is_direct or event.bot_user_id in event.mentions):
        return
    root = post.root_id or post.id
    await _converse(
        ctx,
        post_id=post.id,
        channel_id=post.channel_id,
        root_id=root,
        user_id=post.user_id,
        user_name=(event.sender_name or "").lstrip("@") or None,
        text=strip_mentions(post.message, [f"@{event.bot_username}"] if event.bot_username else []),
        is_direct=is_direct,
        attachments=_files(post),
        in_thread=bool(post.root_id),
    )


class OutgoingWebhook(BaseModel):
    model_config = ConfigDict(extra="ignore")

    channel_id: str
    post_id: str
    user_id: str
    user_name: str | None = None
    text: str = ""
    trigger_word: str = ""
    file_ids: str | list[str] | None = None


async def on_outgoing_webhook(ctx: Context) -> None:
    hook = ctx.payload_as(OutgoingWebhook)
    me = await api.me(ctx)
    if hook.user_id == me.id:
        return
    ids = hook.file_ids.split(",") if isinstance(hook.file_ids, str) else hook.file_ids or []
    await _converse(
        ctx,
        post_id=hook.post_id,
        channel_id=hook.channel_id,
        root_id=hook.post_id,
        user_id=hook.user_id,
        user_name=hook.user_name,
        text=strip_mentions(hook.text, [m for m in (hook.trigger_word, f"@{me.username}") if m]),
        is_direct=False,
        attachments=[AttachmentSource(i) for i in ids if i],
    )


class SlashCommand(BaseModel):
    model_config = ConfigDict(extra="ignore")

    channel_id: str
    user_id: str
    user_name: str | None = None
    command: str
    text: str = ""


async def on_slash_command(ctx: Context) -> None:
    command = ctx.payload_as(SlashCommand)
    await _converse(
        ctx,
        post_id=None,
        channel_id=command.channel_id,
        root_id=None,
        user_id=command.user_id,
        user_name=command.user_name,
        text=command.text.strip(),
        is_direct=False,
        attachments=[],
    )


async def _converse(
    ctx: Context,
    *,
    post_id: str | None,
    channel_id: str,
    root_id: str | None,
    user_id: str,
    user_name: str | None,
    text: str,
    is_direct: bool,
    attachments: list[AttachmentSource],
    in_thread: bool = False,
) -> None:
    where: dict[str, Any] = {"channel_id": channel_id}
    if root_id:
        where["root_id"] = root_id
    thread = None
    if in_thread and root_id and post_id:
        limit = ctx.settings_as(MattermostSettings).thread_context_messages
        thread = Thread(lambda: threads.context(ctx, root_id, post_id), limit)
    await receive(
        ctx,
        IncomingMessage(
            message_id=post_id or ctx.envelope.id,
            conversation_id=f"mattermost-{channel_id}-{root_id or 'main'}",
            text=text,
            sender=Sender(user_id, user_name),
            replies=Replies("post_message", where, "message", None if is_direct else {"user_id": user_id}),
            acknowledge=Command("add_reaction", {"post_id": post_id, "emoji_name": ACK_EMOJI}) if post_id else None,
            attachments=attachments,
            is_direct=is_direct,
            metadata={"channel_id": channel_id, "post_id": post_id, "root_id": root_id},
            thread=thread,
        ),
    )
