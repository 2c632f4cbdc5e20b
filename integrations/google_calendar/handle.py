"""What Google Calendar work arrives as, and who handles it.

Ordering: a task's syncs and deletion run one after the other (the task); a calendar's
notifications and channel renewals, per linked user's calendar (the link)."""

from __future__ import annotations

from integrations.google_calendar import changes, channels, tasks, user_links
from worker.sdk import Handler, payload_key

BY_TASK = payload_key("task_id")
BY_LINK = payload_key("link_id")

HANDLERS = [
    Handler("webhook", "notification", changes.on_notification, key=BY_LINK),
    Handler("command", "sync_task", tasks.on_sync_task, key=BY_TASK),
    # The platform deleted a task: as its event (every team's: those without the calendar are
    # skipped quietly), or as a command to this integration like sync_task.
    Handler("event", "task_deleted", tasks.on_task_deleted, requires_integration=False, key=BY_TASK),
    Handler("command", "task_deleted", tasks.on_task_deleted, key=BY_TASK),
    Handler("command", "sync_task_for_link", user_links.on_sync_task_for_link, key=BY_TASK),
    Handler("command", "renew_channel", channels.on_renew_channel, key=BY_LINK),
]
