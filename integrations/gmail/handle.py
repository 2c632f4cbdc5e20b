"""What Gmail work arrives as, and who handles it.

Ordering: one mailbox's pushes, syncs and watch renewals run one after the other."""

from __future__ import annotations

from integrations.gmail import sync, watch
from worker.sdk import Handler, payload_key

BY_LINK = payload_key("link_id")

HANDLERS = [
    # A push names a mailbox, not an integration: it fans out to each linked mailbox's integration.
    Handler(
        "webhook", "notification", sync.on_notification, requires_integration=False, key=payload_key("email_address")
    ),
    Handler("command", "sync", sync.on_sync, key=BY_LINK),
    Handler("command", "renew_watch", watch.on_renew_watch, key=BY_LINK),
]
