"""Result events: what the worker tells other services, on the results exchange.

Every event is a `ResultEvent` whose `event` field is also its routing key on
the results exchange (`task.intake`, `integration.installed`, ...) and whose
`data` is one of the typed models below. Event ids are derived from the id of
the message that caused them, so a re-run produces the same ids and consumers
can deduplicate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPES: dict[str, type[EventData]] = {}


class EventData(BaseModel):
    """Base of every event payload; subclasses set `EVENT`, their routing key."""

    model_config = ConfigDict(extra="forbid")
    EVENT: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.EVENT:
            if cls.EVENT in EVENT_TYPES and EVENT_TYPES[cls.EVENT].__qualname__ != cls.__qualname__:
                raise TypeError(f"event {cls.EVENT!r} is declared twice")
            EVENT_TYPES[cls.EVENT] = cls


DataT = TypeVar("DataT", bound=BaseModel)


class ResultEvent(BaseModel, Generic[DataT]):
    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    id: str = Field(description="Unique, stable across re-runs of the causing message.")
    event: str = Field(description="The event type; also the routing key on the results exchange.")
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source_type: str = Field(description="The integration type that produced it.")
    team_id: str | None = None
    integration_id: str | None = None
    causation_id: str = Field(description="The id of the envelope that caused this event.")
    trace_id: str
    data: DataT


# --- lifecycle -------------------------------------------------------------------------------------


class IntegrationInstalled(EventData):
    EVENT: ClassVar[str] = "integration.installed"
    integration_id: str
    type: str
    name: str
    team_id: str
    external_team_id: str | None = None
    user_id: str | None = None
    is_new_install: bool
    source: str = Field(description="Where the install came from: http, cli, command, oauth, webhook.")


class IntegrationUpdated(EventData):
    EVENT: ClassVar[str] = "integration.updated"
    integration_id: str
    type: str
    team_id: str


class IntegrationUninstalled(EventData):
    EVENT: ClassVar[str] = "integration.uninstalled"
    integration_id: str
    type: str
    team_id: str


IntegrationStatus = Literal["active", "suspended", "uninstalled", "revoked"]


class IntegrationStatusChanged(EventData):
    """The provider changed the integration's state (GitHub App suspended, Slack app uninstalled...)."""

    EVENT: ClassVar[str] = "integration.status_changed"
    integration_id: str
    type: str
    status: IntegrationStatus
    previous_status: IntegrationStatus
    reason: str


# --- tasks -----------------------------------------------------------------------------------------


class TaskIntake(EventData):
    """Something outside (an issue, a comment, an email) the platform may turn into a task."""

    EVENT: ClassVar[str] = "task.intake"
    source: str = Field(description="`github`, `gmail`, ...")
    source_id: str = Field(description="Stable id of the item at the source; deduplicate on (source, source_id).")
    kind: str = Field(description="What the item is at the source: `issue`, `issue_comment`, `email`, ...")
    action: str | None = Field(default=None, description="What happened to it: `opened`, `edited`, ...")
    title: str
    body: str = ""
    url: str | None = None
    author: str | None = Field(default=None, description="The author's name or login at the source.")
    author_external_id: str | None = None
    user_id: str | None = Field(default=None, description="The platform user the intake belongs to, if known.")
    metadata: dict[str, Any] = Field(default_factory=dict)


TaskStatusTarget = Literal["done", "review", "in_progress"]


class PullRequestPerson(BaseModel):
    """Someone on a pull request (its author, an assignee, a requested reviewer) and, when they
    linked their account at the source, their platform user."""

    model_config = ConfigDict(extra="forbid")

    login: str = Field(description="Their login at the source (GitHub).")
    external_user_id: str = Field(description="Their id at the source (GitHub's numeric user id, as text).")
    user_id: str | None = Field(default=None, description="The platform user, when they linked their account.")


class TaskStatusChange(EventData):
    """A pull request's "magic words" (`fixes ABC-12`) ask to move a task."""

    EVENT: ClassVar[str] = "task.status_change"
    task_ref: str = Field(description="`PREFIX-SEQUENCE`, e.g. `ABC-12`.")
    prefix: str
    sequence: int
    status: TaskStatusTarget
    magic_word: str
    source: str = "github"
    pull_request_url: str
    pull_request_number: int
    pull_request_updated_at: datetime = Field(
        description="The pull request's version that asked for this; apply status changes in this order."
    )
    repository: str
    merged: bool
    author: PullRequestPerson | None = Field(
        default=None,
        description="Who opened the pull request; its `user_id` only when the author is also an assignee or "
        "reviewer (no extra lookup per event): else map `external_user_id` through the integration's links.",
    )
    assignees: list[PullRequestPerson] = Field(default_factory=list)
    reviewers: list[PullRequestPerson] = Field(default_factory=list, description="The reviewers requested.")


# --- conversations (Slack, Mattermost, WhatsApp, task comments) -----------------------------------------

AttachmentKind = Literal["image", "audio", "video", "document", "other"]


class AttachmentRef(BaseModel):
    """A file that came with a message, by reference: `url` is a signed, expiring link on the ingress
    that fetches the file from the provider with the integration's own credentials."""

    model_config = ConfigDict(extra="forbid")

    kind: AttachmentKind
    name: str | None = None
    mime_type: str | None = None
    size: int | None = Field(default=None, description="Bytes, when the provider said.")
    url: str = Field(description="GET it (no other credentials needed) before `expires_at`.")
    expires_at: datetime
    transcribe: bool = Field(default=False, description="Audio: the platform should transcribe it.")


class ReplyTarget(BaseModel):
    """How to answer a message: publish `routing_key` (a command on the incoming exchange) with
    `integration_id` and `input`, plus the answer's text under `text_field`."""

    model_config = ConfigDict(extra="forbid")

    type: str
    action: str
    routing_key: str
    integration_id: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    text_field: str = "text"


class ThreadMessage(BaseModel):
    """One message of a chat thread (Slack, Mattermost), as the agent reads it: in
    `message.received`'s `thread` (the messages before the one received) and from the
    `<type>_read_thread` tools. Texts longer than 3,000 characters are cut, with a marker."""

    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(description="The message's id at the source (Slack `ts`, Mattermost post id).")
    external_user_id: str | None = Field(description="Who wrote it at the provider (a bot's id for bot posts).")
    external_user_name: str | None = None
    user_id: str | None = Field(default=None, description="The author's platform user, when they linked.")
    text: str
    truncated: bool = Field(default=False, description="The text was cut (it ends with a marker).")
    timestamp: datetime
    is_bot: bool = Field(default=False, description="Posted by a bot (the agent's own answers included).")
    is_agent: bool = Field(default=False, description="Posted by this integration's bot: the agent's earlier answers.")


class MessageReceived(EventData):
    """A linked person wrote to the bot (a mention, a direct message, a WhatsApp message, a task
    comment mentioning it): the platform's agent should answer through `reply`."""

    EVENT: ClassVar[str] = "message.received"
    source: str = Field(description="`slack`, `mattermost`, `whatsapp`, `task-comments`.")
    conversation_id: str = Field(description="`slack-{channel}-{thread}`, `task-{task_id}-thread`, ...")
    message_id: str = Field(description="The message's id at the source.")
    user_id: str = Field(description="The platform user who wrote it.")
    user_link_id: str | None = Field(default=None, description="The `integration_user_link` row, if one was used.")
    external_user_id: str
    external_user_name: str | None = None
    text: str = Field(description="What they wrote, without the bot's mention.")
    attachments: list[AttachmentRef] = Field(default_factory=list)
    is_direct: bool = Field(default=False, description="A direct message rather than a mention in a channel.")
    reply: ReplyTarget
    metadata: dict[str, Any] = Field(default_factory=dict)
    text_truncated: bool = Field(default=False, description="`text` was cut at 3,000 characters (with a marker).")
    thread: list[ThreadMessage] = Field(
        default_factory=list,
        description="The thread's earlier messages, oldest first (Slack, Mattermost; a deployment's limit, "
        "bounded in size); empty outside a thread or when off.",
    )
    thread_omitted: int = Field(
        default=0, description="Earlier messages of the thread left out (beyond the limit or the size bound)."
    )


class UserLinked(EventData):
    """A platform user confirmed an account-link token: their external account is now linked."""

    EVENT: ClassVar[str] = "integration.user_linked"
    link_id: str
    integration_id: str
    integration_type: str
    user_id: str
    external_user_id: str
    external_user_name: str | None = None


class UserUnlinked(EventData):
    """A user's link was removed (the platform's unlink: admin API, CLI or command); where the
    provider allows, its tokens were revoked first."""

    EVENT: ClassVar[str] = "integration.user_unlinked"
    link_id: str
    integration_id: str
    integration_type: str
    user_id: str
    external_user_id: str
    revoked: bool = Field(description="The provider confirmed the tokens are revoked (false: none to revoke).")
    source: str = Field(description="`http`, `cli` or `command`.")


class TaskCommentReply(EventData):
    """The agent answers on a task: the platform stores it as a comment by the bot."""

    EVENT: ClassVar[str] = "task_comment.reply"
    task_id: str
    text: str
    in_reply_to_comment_id: str | None = None
    conversation_id: str


class TaskCommentReaction(EventData):
    """The bot acknowledges a comment (it got it and is working on it)."""

    EVENT: ClassVar[str] = "task_comment.reaction"
    task_id: str
    comment_id: str
    emoji: str


# --- Google and email: OAuth user links, Google Calendar ---------------------------------------------


class UserLinkNeedsReconnect(EventData):
    """A user's OAuth link stopped working for good (the provider refused its refresh token:
    revoked, expired, password changed). Work for it stops until the user connects again
    through `GET /oauth/{type}/start`; the platform should ask them to."""

    EVENT: ClassVar[str] = "integration.link_needs_reconnect"
    link_id: str
    integration_id: str | None
    type: str = Field(description="The integration type: `gmail`, `google-calendar`, ...")
    user_id: str = Field(description="The platform user who must reconnect.")
    external_user_id: str = Field(description="The account at the provider (a Google address).")
    reason: str


class CalendarEventChanged(EventData):
    """An event of a linked Google Calendar was created, changed or deleted (push notification,
    then an incremental sync). Changes the worker made itself for a task are not reported."""

    EVENT: ClassVar[str] = "calendar.event_changed"
    link_id: str
    user_id: str
    calendar_id: str
    event_id: str
    status: str = Field(description="`confirmed`, `tentative` or `cancelled` (deleted).")
    deleted: bool
    summary: str | None = None
    description: str | None = None
    location: str | None = None
    start: str | None = Field(default=None, description="RFC 3339 date-time, or a date for all-day events.")
    end: str | None = None
    html_link: str | None = None
    updated: str | None = Field(default=None, description="When Google last changed it (RFC 3339).")
    task_id: str | None = Field(default=None, description="The task this event mirrors, when it is a task's event.")
