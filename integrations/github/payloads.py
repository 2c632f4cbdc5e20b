"""The parts of GitHub's webhook payloads the handlers read (everything else is ignored)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class User(_Loose):
    login: str
    id: int
    type: str = "User"
    avatar_url: str | None = None


class Repository(_Loose):
    id: int
    full_name: str
    private: bool = False


class Installation(_Loose):
    id: int
    account: User | None = None


class InstallationEvent(_Loose):
    action: str
    installation: Installation
    repositories: list[Repository] | None = None


class InstallationRepositoriesEvent(_Loose):
    action: str
    installation: Installation
    repositories_added: list[Repository] = Field(default_factory=list)
    repositories_removed: list[Repository] = Field(default_factory=list)


class PullRequest(_Loose):
    id: int
    number: int
    title: str
    body: str | None = None
    state: str
    draft: bool = False
    merged: bool = False
    merged_at: datetime | None = None
    html_url: str
    user: User | None = None
    assignees: list[User] = Field(default_factory=list)
    requested_reviewers: list[User] = Field(default_factory=list)
    updated_at: datetime
    head_sha: str | None = None


class PullRequestEvent(_Loose):
    action: str
    number: int
    pull_request: PullRequest
    repository: Repository


class Label(_Loose):
    name: str


class Issue(_Loose):
    id: int
    number: int
    title: str
    body: str | None = None
    state: str
    html_url: str
    user: User | None = None
    labels: list[Label] = Field(default_factory=list)
    pull_request: dict[str, object] | None = None


class IssuesEvent(_Loose):
    action: str
    issue: Issue
    repository: Repository


class App(_Loose):
    id: int | None = None
    slug: str | None = None
    client_id: str | None = None


class Comment(_Loose):
    id: int
    body: str | None = None
    html_url: str
    user: User | None = None
    performed_via_github_app: App | None = None  # set when an App wrote it (even with a user's token)


class IssueCommentEvent(_Loose):
    action: str
    issue: Issue
    comment: Comment
    repository: Repository
    sender: User | None = None
