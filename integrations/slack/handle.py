"""What Slack sends us, and who handles it. Every other event is accepted, counted, acknowledged.

Ordering: the messages of one thread run one after the other (a direct-message conversation is
one thread); the workspace's lifecycle events, one order per workspace."""

from __future__ import annotations

from collections.abc import Mapping

from integrations.slack import lifecycle, messages
from worker.sdk import Handler, MessageView, per_integration


def by_thread(message: MessageView) -> str | None:
    """The thread (`event.channel`, `event.thread_ts` or `ts`); a direct-message conversation is one.

    A reply carries its thread's `thread_ts`, a message that starts one its own `ts`."""
    event = message.payload.get("event")
    if not isinstance(event, Mapping) or not event.get("channel"):
        return None
    if event.get("thread_ts"):
        return f"{event['channel']}:{event['thread_ts']}"
    if event.get("channel_type") == "im":
        return str(event["channel"])
    return f"{event['channel']}:{event.get('ts') or ''}"


HANDLERS = [
    Handler("webhook", "app_mention", messages.on_app_mention, key=by_thread),
    Handler("webhook", "message", messages.on_message, key=by_thread),
    # Lifecycle events must run for inactive or unknown workspaces too.
    Handler(
        "webhook",
        "app_uninstalled",
        lifecycle.on_app_uninstalled,
        requires_integration=False,
        when_inactive=True,
        key=per_integration,
    ),
    Handler(
        "webhook",
        "tokens_revoked",
        lifecycle.on_tokens_revoked,
        requires_integration=False,
        when_inactive=True,
        key=per_integration,
    ),
]
