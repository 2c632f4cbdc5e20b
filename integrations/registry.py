"""Every integration this worker knows. Adding one: a folder, and a line here."""

from integrations import github, telegram
from worker.integration import Registry

REGISTRY = Registry(
    [
        github.integration,
        telegram.integration,
    ]
)
