"""What Google Calendar work arrives as, and who handles it."""

from __future__ import annotations

from integrations.google_calendar import changes, channels, tasks
from worker.sdk import Handler

HANDLERS = [
    Handler("webhook", "notification", changes.on_notification),
    Handler("command", "sync_task", tasks.on_sync_task),
    Handler("command", "renew_channel", channels.on_renew_channel),
]
