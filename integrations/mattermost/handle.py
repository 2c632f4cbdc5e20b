"""What reaches the bot from Mattermost: WebSocket posts (worker/runtime/services.py runs the listener),
outgoing webhooks and slash commands (the ingress)."""

from __future__ import annotations

from integrations.mattermost import messages
from worker.sdk import Handler

HANDLERS = [
    Handler("webhook", "posted", messages.on_posted),
    Handler("webhook", "outgoing_webhook", messages.on_outgoing_webhook),
    Handler("webhook", "slash_command", messages.on_slash_command),
]
