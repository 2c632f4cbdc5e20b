"""GitHub, as a GitHub App: webhooks in (installation, pull requests, issues, comments),
comments out through installation tokens."""

from pathlib import Path

from integrations.github import comment, handle, installations, verify
from integrations.github.config import GithubConfig, GithubSettings
from worker.sdk import Action, Integration, Lifecycle

integration = Integration(
    type="github",
    name="GitHub",
    description="Pull requests move tasks (magic words), issues and comments become intake, agents comment.",
    config=GithubConfig,
    settings=GithubSettings,
    webhook=verify.receive,
    max_body_bytes=25 * 1024 * 1024,  # GitHub sends up to 25 MB
    handlers=handle.HANDLERS,
    actions=[
        Action(
            "comment",
            "Comment on a GitHub issue or pull request.",
            comment.CommentInput,
            comment.CommentOutput,
            comment.run,
        )
    ],
    lifecycle=Lifecycle(validate=installations.validate, post_install=installations.sync_repositories),
    migrations=Path(__file__).with_name("migrations"),
    external_team_id=lambda config: str(config.installation_id),
)
