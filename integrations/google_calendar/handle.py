"""What Google Calendar work arrives as, and who handles it."""

from __future__ import annotations

from integrations.google_calendar import changes, channels, tasks, user_links
from worker.sdk import Handler

HANDLERS = [
    Handler("webhook", "notification", changes.on_notification),
    Handler("command", "sync_task", tasks.on_sync_task),
    # The platform deleted a task: as its event (every team's: those without the calendar are
    # skipped quietly), or as a command to this integration like sync_task.
    Handler("event", "task_deleted", tasks.on_task_deleted, requires_integration=False),
    Handler("command", "task_deleted", tasks.on_task_deleted),
    Handler("command", "sync_task_for_link", user_links.on_sync_task_for_link),
    Handler("command", "renew_channel", channels.on_renew_channel),
]
