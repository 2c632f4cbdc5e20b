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

Thread context (Slack, Mattermost): a message inside a thread carries a `Thread`, a reader of
the thread's earlier messages that runs only once the sender is known to be linked; they go out
in `message.received`'s `thread`, with each author's platform user when that author linked.
Reading it is best effort: a refusal or an outage of the provider leaves the thread empty
(logged), never fails the message. `thread_messages` serves the `read_thread` tools the same way.

The size guard (MIMRAI's `safeMessage` cut a text at 3,000 characters): the text, and each
thread message, is cut at `MAX_TEXT_CHARS` with a marker saying how much was left out; the
thread as a whole keeps its newest messages within `MAX_THREAD_CHARS`, and says how many earlier
ones it left out (`thread_omitted`). MIMRAI also dropped thread posts of 100 words or more and
put a zero-width space after every `@`; here long posts keep their beginning, and texts are
passed on as written (the agent's answers go through the integration's own post commands).

A provider account several teams share (WhatsApp's shared number) has no integration a message
could be routed to before its sender is linked: `ask_to_link_any_team` sends that person a link
whose token names no team; the platform links them in the team of the user who confirms.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from schemas.envelope import routing_key
from schemas.events import EventData, MessageReceived, ReplyTarget, ThreadMessage
from worker.sdk import association
from worker.sdk.attachments import AttachmentSource, reference
from worker.sdk.context import Context
from worker.sdk.errors import IntegrationError

MAX_TEXT_CHARS = 3000  # one message's text (MIMRAI's safeMessage)
MAX_THREAD_CHARS = 15000  # a thread's texts together: the newest messages that fit
DEFAULT_THREAD_MESSAGES = 20


def bounded_text(text: str, limit: int = MAX_TEXT_CHARS) -> tuple[str, bool]:
    """The text cut at `limit` characters with a marker of how much was left out; and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return f"{text[:limit]}… [cut: {len(text) - limit} more characters]", True


@dataclass(frozen=True)
class ThreadEntry:
    """One message of a thread as the integration read it from its provider. `external_user_id`:
    the author at the provider (a bot's id for bot posts); `is_agent`: this integration's bot."""

    message_id: str
    external_user_id: str | None
    text: str
    timestamp: datetime
    is_bot: bool = False
    is_agent: bool = False
    external_user_name: str | None = None


@dataclass(frozen=True)
class Thread:
    """The thread a message was written in: `read()` returns its messages before that one (any
    order; at least the newest `limit`). It runs only for a linked sender; `limit` 0: no context."""

    read: Callable[[], Awaitable[Sequence[ThreadEntry]]]
    limit: int = DEFAULT_THREAD_MESSAGES


async def thread_messages(
    ctx: Context,
    entries: Sequence[ThreadEntry],
    *,
    limit: int,
    max_chars: int = MAX_THREAD_CHARS,
    known: Mapping[str, str] | None = None,
) -> tuple[list[ThreadMessage], int]:
    """The newest `limit` entries, oldest first, each text within MAX_TEXT_CHARS and all within
    `max_chars` (older ones go first), with the platform user of each author who linked (`known`:
    external id -> user id already at hand); and how many were left out."""
    ordered = sorted(entries, key=lambda e: e.timestamp)
    kept = ordered[-limit:] if limit > 0 else []
    bounded: list[tuple[ThreadEntry, str, bool]] = []
    total = 0
    for entry in reversed(kept):
        text, cut = bounded_text(entry.text)
        if total + len(text) > max_chars:
            break
        total += len(text)
        bounded.append((entry, text, cut))
    bounded.reverse()
    users = dict(known or {})
    authors = {e.external_user_id for e, _, _ in bounded if e.external_user_id and not e.is_bot}
    if missing := sorted(authors - users.keys()):  # one query for the thread's linked authors
        users |= {link.external_user_id: link.user_id for link in await ctx.links.of_accounts(missing) if link.active}
    messages = [
        ThreadMessage(
            message_id=entry.message_id,
            external_user_id=entry.external_user_id,
            external_user_name=entry.external_user_name,
            user_id=users.get(entry.external_user_id or "") if not entry.is_bot else None,
            text=text,
            truncated=cut,
            timestamp=entry.timestamp,
            is_bot=entry.is_bot or entry.is_agent,
            is_agent=entry.is_agent,
        )
        for entry, text, cut in bounded
    ]
    return messages, len(ordered) - len(messages)


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
    thread: Thread | None = None  # inside a thread: its earlier messages, for the agent


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
    text, text_truncated = bounded_text(message.text)
    thread, omitted = await _thread_context(ctx, message, {sender.external_id: user_id})
    ctx.emit(
        MessageReceived(
            source=integration.type,
            conversation_id=message.conversation_id,
            message_id=message.message_id,
            user_id=user_id,
            user_link_id=link_id,
            external_user_id=sender.external_id,
            external_user_name=sender.name,
            text=text,
            attachments=[reference(settings, integration.id, a) for a in message.attachments],
            is_direct=message.is_direct,
            reply=reply,
            metadata=message.metadata,
            text_truncated=text_truncated,
            thread=thread,
            thread_omitted=omitted,
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


async def _thread_context(
    ctx: Context, message: IncomingMessage, known: Mapping[str, str]
) -> tuple[list[ThreadMessage], int]:
    if message.thread is None or message.thread.limit <= 0:
        return [], 0
    try:
        entries = await message.thread.read()
    except IntegrationError as exc:  # best effort: the message goes on without its context
        ctx.log.warning("thread context unavailable", conversation_id=message.conversation_id, error=str(exc))
        return [], 0
    return await thread_messages(ctx, entries, limit=message.thread.limit, known=known)


def ask_to_link_any_team(ctx: Context, message: IncomingMessage, *, integration_name: str, account: str) -> Outcome:
    """A message to a provider `account` several teams share (WhatsApp's shared number) from
    someone linked in none of them: one reply with an association link whose token names the
    account but no team nor integration; the platform links the person to the integration on that
    account of the team of the user who confirms (MIMRAI's mode: the signed-in user's team).
    `message.replies` must work without an integration (the context has none)."""
    settings = ctx.runtime_settings
    sender = message.sender
    token = association.mint(
        settings,
        association.LinkClaim(
            integration_id=None,
            team_id=None,
            type=ctx.type,
            external_user_id=sender.external_id,
            external_user_name=sender.name,
            reply={
                "action": message.replies.action,
                "input": message.replies.private_input or message.replies.input,
                "text_field": message.replies.text_field,
            },
            shared_account=account,
        ),
    )
    text = association_text(integration_name, sender.name, association.url(settings, token), settings.link_ttl)
    _stage(ctx, message.replies.command(text, private=True), "association")
    ctx.log.info("association link sent (shared account)", conversation_id=message.conversation_id)
    return "association_sent"


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
