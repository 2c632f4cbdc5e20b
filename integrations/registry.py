"""Every integration this worker knows. Adding one: a folder, and a line here."""

from integrations import github, mattermost, slack, task_comments, whatsapp
from worker.integration import Registry

REGISTRY = Registry(
    [
        github.integration,
        mattermost.integration,
        slack.integration,
        task_comments.integration,
        whatsapp.integration,
    ]
)
