"""What Gmail work arrives as, and who handles it."""

from __future__ import annotations

from integrations.gmail import sync, watch
from worker.sdk import Handler

HANDLERS = [
    # A push names a mailbox, not an integration: it fans out to each linked mailbox's integration.
    Handler("webhook", "notification", sync.on_notification, requires_integration=False),
    Handler("command", "sync", sync.on_sync),
    Handler("command", "renew_watch", watch.on_renew_watch),
]
