"""What Slack sends us, and who handles it. Every other event is accepted, counted, acknowledged."""

from __future__ import annotations

from integrations.slack import lifecycle, messages
from worker.sdk import Handler

HANDLERS = [
    Handler("webhook", "app_mention", messages.on_app_mention),
    Handler("webhook", "message", messages.on_message),
    # Lifecycle events must run for inactive or unknown workspaces too.
    Handler("webhook", "app_uninstalled", lifecycle.on_app_uninstalled, requires_integration=False, when_inactive=True),
    Handler("webhook", "tokens_revoked", lifecycle.on_tokens_revoked, requires_integration=False, when_inactive=True),
]
