"""App mentions and direct messages: handed to the shared conversation path (worker/sdk/conversation.py).

Replies go in the thread: `thread_ts` when the mention is inside a thread, else the message's own
`ts` (MIMRAI ignored `thread_ts` and started sub-threads). In a channel, the association link is
an ephemeral message in that thread, visible to the person alone (anyone who opened it could
otherwise link the person's Slack account to their own platform account); in a direct message it
is a plain reply. A linked person's message gets an :eyes: reaction as its acknowledgement.

A message inside a thread (`thread_ts` other than its own `ts`) carries the thread's earlier
messages for the agent, up to IW_SLACK_THREAD_CONTEXT_MESSAGES (threads.py).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from integrations.slack import api, threads
from integrations.slack.config import SlackConfig, SlackSettings
from worker.sdk import AttachmentSource, Context
from worker.sdk.conversation import Command, IncomingMessage, Replies, Sender, Thread, receive, strip_mentions

ACK_EMOJI = "eyes"


class SlackFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    name: str | None = None
    mimetype: str | None = None
    size: int | None = None
    url_private: str | None = None
    url_private_download: str | None = None


class MessageEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    user: str | None = None
    text: str = ""
    ts: str
    channel: str
    thread_ts: str | None = None
    channel_type: str | None = None
    subtype: str | None = None
    bot_id: str | None = None
    client_msg_id: str | None = None
    files: list[SlackFile] = []


class EventCallback(BaseModel):
    model_config = ConfigDict(extra="ignore")

    team_id: str | None = None
    event_id: str
    event: MessageEvent


async def on_app_mention(ctx: Context) -> None:
    await _converse(ctx, ctx.payload_as(EventCallback), is_direct=False)


async def on_message(ctx: Context) -> None:
    """`message.im`: a direct message to the bot. Edits, bot posts and other subtypes are skipped."""
    callback = ctx.payload_as(EventCallback)
    event = callback.event
    if event.channel_type != "im" or event.subtype or event.bot_id:
        ctx.log.info("slack message skipped", channel_type=event.channel_type, subtype=event.subtype)
        return
    await _converse(ctx, callback, is_direct=True)


async def _converse(ctx: Context, callback: EventCallback, *, is_direct: bool) -> None:
    config = ctx.config_as(SlackConfig)
    event = callback.event
    if not event.user or event.user == config.bot_user_id:
        return  # the bot's own messages, and bot messages without a person
    thread = event.thread_ts or event.ts
    where = {"channel": event.channel, "thread_ts": thread}
    mentions = [f"<@{config.bot_user_id}>"] if config.bot_user_id else []
    in_thread = event.thread_ts is not None and event.thread_ts != event.ts
    limit = ctx.settings_as(SlackSettings).thread_context_messages
    await receive(
        ctx,
        IncomingMessage(
            message_id=event.client_msg_id or event.ts,
            conversation_id=f"slack-{event.channel}-{thread}",
            text=strip_mentions(event.text, mentions),
            sender=Sender(event.user, await api.user_name(ctx, event.user)),
            replies=Replies(
                "post_message",
                where,
                private_input=None if is_direct else {**where, "ephemeral_user": event.user},
            ),
            acknowledge=Command("add_reaction", {"channel": event.channel, "timestamp": event.ts, "name": ACK_EMOJI}),
            attachments=[
                AttachmentSource(url, f.name, f.mimetype, f.size)
                for f in event.files
                if (url := f.url_private_download or f.url_private)
            ],
            is_direct=is_direct,
            metadata={"channel": event.channel, "ts": event.ts, "thread_ts": thread, "slack_team_id": callback.team_id},
            thread=Thread(lambda: threads.context(ctx, event.channel, thread, event.ts), limit) if in_thread else None,
        ),
    )
