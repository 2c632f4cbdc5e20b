"""Every integration this worker knows. Adding one: a folder, and a line here."""

from integrations import github, gmail, google_calendar, smtp
from worker.integration import Registry

REGISTRY = Registry(
    [
        github.integration,
        gmail.integration,
        google_calendar.integration,
        smtp.integration,
    ]
)
