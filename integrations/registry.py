"""Every integration this worker knows. Adding one: a folder, and a line here."""

from integrations import github, gmail, google_calendar, mattermost, slack, smtp, task_comments, telegram, whatsapp
from worker.sdk import Registry

REGISTRY = Registry(
    [
        github.integration,
        gmail.integration,
        google_calendar.integration,
        mattermost.integration,
        slack.integration,
        smtp.integration,
        task_comments.integration,
        telegram.integration,
        whatsapp.integration,
    ]
)
