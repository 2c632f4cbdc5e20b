"""One path for "a message reached the bot", whichever chat it came from (Slack, Mattermost,
WhatsApp, task comments). An integration's handler turns its provider's message into an
`IncomingMessage` and calls `receive(ctx, message)`:

1. the integration is the message's own: the worker found it by integration id, provider account
   (Slack team, WhatsApp number) or team;
2. the sender's link: `integration_user_link` by this integration, its type and the external user
   id (MIMRAI's lookup had no type filter, so a phone number could match another integration's
   user);
3. not linked: exactly one reply where they wrote, carrying an association link to the platform
   with a signed, expiring token (worker/sdk/association.py);
4. linked: `message.received` for the platform's agent (conversation id, the text without the
   bot's mention, attachments by reference, team, user, and how to reply), and an
   acknowledgement to the person (a reaction, or "working on it").

Replies and acknowledgements are the integration's own commands (`slack.command.post_message`,
...), staged with `ctx.publish`: they go out only if the message commits, with ids derived from
the message's id, so a message run twice (a crash before commit, a provider's retry) still
replies once; and each gets the worker's retries (429 and Retry-After, transient errors).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.envelope import routing_key
from schemas.events import EventData, MessageReceived, ReplyTarget
from worker.sdk import association
from worker.sdk.attachments import AttachmentSource, reference
from worker.sdk.context import Context


@dataclass(frozen=True)
class Sender:
    """Who wrote. `platform_user_id` when the source already says who they are on the platform (the
    platform's own events, such as task comments): no link is needed then."""

    external_id: str
    name: str | None = None
    platform_user_id: str | None = None


@dataclass(frozen=True)
class Command:
    """One of this integration's actions, to run as `<type>.command.<action>`."""

    action: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Replies:
    """How to answer where the message was written: `action` with `input`, plus the text under
    `text_field`. `private_input`, when the chat can, shows the association link to the sender
    alone (Slack: an ephemeral message in the thread; Mattermost: a direct message)."""

    action: str
    input: dict[str, Any]
    text_field: str = "text"
    private_input: dict[str, Any] | None = None

    def command(self, text: str, *, private: bool = False) -> Command:
        where = self.private_input if private and self.private_input is not None else self.input
        return Command(self.action, {**where, self.text_field: text})


@dataclass(frozen=True)
class IncomingMessage:
    message_id: str
    conversation_id: str
    text: str
    sender: Sender
    replies: Replies
    acknowledge: Command | EventData | None = None
    attachments: Sequence[AttachmentSource] = ()
    is_direct: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


Outcome = Literal["received", "association_sent"]


def association_text(integration_name: str, sender_name: str | None, link: str, ttl_seconds: float) -> str:
    hours = max(1, round(ttl_seconds / 3600))
    greeting = f"Hi {sender_name}!" if sender_name else "Hi!"
    return (
        f"{greeting} Before I can help, link your {integration_name} account to your workspace account: "
        f"{link} (the link works for {hours} hour{'s' if hours != 1 else ''}). Then write to me again."
    )


def strip_mentions(text: str, mentions: Sequence[str]) -> str:
    """The text without the bot's mentions (`<@U123>`, `@bot`), whitespace tidied."""
    for mention in mentions:
        if mention:
            text = re.sub(re.escape(mention) + r"\b" if mention[-1].isalnum() else re.escape(mention), " ", text)
    return re.sub(r"[ \t]+", " ", text).strip()


async def receive(ctx: Context, message: IncomingMessage) -> Outcome:
    if ctx.integration is None:
        raise RuntimeError("conversation.receive needs the message's integration")
    integration = ctx.integration
    sender = message.sender
    settings = ctx.runtime_settings
    link_id: str | None = None
    if sender.platform_user_id is not None:
        user_id = sender.platform_user_id
    else:
        found = await ctx.links.find(sender.external_id)
        if found is None:
            return _ask_to_link(ctx, message)
        link_id, user_id = found.id, found.user_id
    reply = ReplyTarget(
        type=integration.type,
        action=message.replies.action,
        routing_key=routing_key(integration.type, "command", message.replies.action),
        integration_id=integration.id,
        input=message.replies.input,
        text_field=message.replies.text_field,
    )
    ctx.emit(
        MessageReceived(
            source=integration.type,
            conversation_id=message.conversation_id,
            message_id=message.message_id,
            user_id=user_id,
            user_link_id=link_id,
            external_user_id=sender.external_id,
            external_user_name=sender.name,
            text=message.text,
            attachments=[reference(settings, integration.id, a) for a in message.attachments],
            is_direct=message.is_direct,
            reply=reply,
            metadata=message.metadata,
        )
    )
    if isinstance(message.acknowledge, Command):
        _stage(ctx, message.acknowledge, "ack")
    elif message.acknowledge is not None:
        ctx.emit(message.acknowledge)
    ctx.record(
        "info",
        "message_received",
        f"message from {sender.name or sender.external_id} in {message.conversation_id}",
        details={"conversation_id": message.conversation_id, "attachments": len(message.attachments)},
        user_link_id=link_id,
    )
    return "received"


def _ask_to_link(ctx: Context, message: IncomingMessage) -> Outcome:
    assert ctx.integration is not None and ctx.team_id is not None
    settings = ctx.runtime_settings
    sender = message.sender
    token = association.mint(
        settings,
        association.LinkClaim(
            integration_id=ctx.integration.id,
            team_id=ctx.team_id,
            type=ctx.integration.type,
            external_user_id=sender.external_id,
            external_user_name=sender.name,
            reply={
                "action": message.replies.action,
                "input": message.replies.private_input or message.replies.input,
                "text_field": message.replies.text_field,
            },
        ),
    )
    text = association_text(ctx.integration.name, sender.name, association.url(settings, token), settings.link_ttl)
    _stage(ctx, message.replies.command(text, private=True), "association")
    ctx.record(
        "info",
        "association_sent",
        f"{sender.name or sender.external_id} is not linked yet: association link sent",
        details={"external_user_id": sender.external_id, "conversation_id": message.conversation_id},
    )
    return "association_sent"


def _stage(ctx: Context, command: Command, purpose: str) -> None:
    ctx.publish("command", command.action, command.input, id=f"{ctx.envelope.id}/{purpose}")
