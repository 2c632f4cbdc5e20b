"""What GitHub sends us, and who handles it. Every other event is accepted, counted, acknowledged."""

from __future__ import annotations

from integrations.github import installations, intake, pr_comments, pull_requests, tools
from worker.sdk import Handler

HANDLERS = [
    # Installation events must run for suspended or unknown installations too.
    Handler(
        "webhook",
        "installation",
        installations.on_installation,
        requires_integration=False,
        when_inactive=True,
    ),
    Handler(
        "webhook",
        "installation_repositories",
        installations.on_installation_repositories,
        requires_integration=False,
        when_inactive=True,
    ),
    Handler("webhook", "pull_request", pull_requests.handle),
    Handler("webhook", "issues", intake.on_issue),
    Handler("webhook", "issue_comment", intake.on_issue_comment),
    # staged by pull_request: the comment with the task's link after a magic word
    Handler("command", pr_comments.COMMAND, pr_comments.handle),
    # staged by connect_repository: one open pull request of the backfill, mapped as its webhook is
    Handler("command", tools.SYNC_COMMAND, pull_requests.handle),
]
