"""GitHub, as a GitHub App: webhooks in (installation, pull requests, issues, comments),
comments out through installation tokens."""

from pathlib import Path

from integrations.github import comment, handle, installations, tools, users, verify
from integrations.github.config import GithubConfig, GithubSettings
from integrations.github.oauth import GithubOAuth
from worker.sdk import Action, Integration, Lifecycle, UserLinks, payload_key, unordered

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
            key=payload_key("repository", "issue_number"),  # an agent's comments on one issue, in order
        ),
        Action(
            "list_repositories",
            "List the repositories the GitHub App installation can see, and which the team connected.",
            tools.ListRepositoriesInput,
            tools.ListRepositoriesOutput,
            tools.list_repositories,
            key=unordered,
        ),
        Action(
            "list_branches",
            "List a GitHub repository's branches.",
            tools.ListBranchesInput,
            tools.ListBranchesOutput,
            tools.list_branches,
            key=unordered,
        ),
        Action(
            "list_pull_requests",
            "List a GitHub repository's open pull requests, most recently updated first.",
            tools.ListPullRequestsInput,
            tools.ListPullRequestsOutput,
            tools.list_pull_requests,
            key=unordered,
        ),
        Action(
            "pull_request_status",
            "A GitHub pull request's state and review status: approvals, changes requested, pending reviewers.",
            tools.PullRequestStatusInput,
            tools.PullRequestStatusOutput,
            tools.pull_request_status,
            key=unordered,
        ),
        Action(
            "connect_repository",
            "Connect a GitHub repository to the team and sync its open pull requests (tasks named in them move).",
            tools.ConnectRepositoryInput,
            tools.ConnectRepositoryOutput,
            tools.connect_repository,
            key=payload_key("repository"),
        ),
    ],
    lifecycle=Lifecycle(validate=installations.validate, post_install=installations.sync_repositories),
    oauth=GithubOAuth(),  # a team installs the App; a person links their GitHub account
    user_links=UserLinks(on_unlink=users.on_unlink),  # unlinking revokes the person's authorization
    migrations=Path(__file__).with_name("migrations"),
    external_team_id=lambda config: str(config.installation_id),
)
