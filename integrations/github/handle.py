"""What GitHub sends us, and who handles it. Every other event is accepted, counted, acknowledged.

Ordering: the events of one pull request or issue run one after the other (its repository and
number); installation events, rare, one order per installation."""

from __future__ import annotations

from integrations.github import installations, intake, pr_comments, pull_requests, tools
from worker.sdk import Handler, payload_key, per_integration

BY_PULL_REQUEST = payload_key("repository.id", "pull_request.number")
BY_ISSUE = payload_key("repository.id", "issue.number")

HANDLERS = [
    # Installation events must run for suspended or unknown installations too.
    Handler(
        "webhook",
        "installation",
        installations.on_installation,
        requires_integration=False,
        when_inactive=True,
        key=per_integration,
    ),
    Handler(
        "webhook",
        "installation_repositories",
        installations.on_installation_repositories,
        requires_integration=False,
        when_inactive=True,
        key=per_integration,
    ),
    Handler("webhook", "pull_request", pull_requests.handle, key=BY_PULL_REQUEST),
    Handler("webhook", "issues", intake.on_issue, key=BY_ISSUE),
    Handler("webhook", "issue_comment", intake.on_issue_comment, key=BY_ISSUE),
    # staged by pull_request: the comment with the task's link after a magic word
    Handler("command", pr_comments.COMMAND, pr_comments.handle, key=payload_key("repository", "pull_request_number")),
    # staged by connect_repository: one open pull request of the backfill, mapped as its webhook is
    Handler("command", tools.SYNC_COMMAND, pull_requests.handle, key=BY_PULL_REQUEST),
]
