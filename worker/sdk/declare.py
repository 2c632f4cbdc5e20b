"""What an integration declares. An integration is one `Integration` value in
`integrations/<name>/__init__.py`:

    integration = Integration(
        type="github", name="GitHub", description="...",
        config=GithubConfig, settings=GithubSettings,
        webhook=verify.receive,                      # the ingress calls it for POST /webhooks/github
        handlers=[Handler("webhook", "pull_request", pull_requests.handle), ...],
        actions=[Action("comment", "Comment on an issue", CommentInput, CommentOutput, comment.run)],
        lifecycle=Lifecycle(validate=..., post_install=...),
    )

and one line in `integrations/registry.py`. The runtime derives everything else: queues, the
command of each action (`<type>.command.<action>`), the agent tool (`<type>_<action>`), the
migrations to apply (`integrations/<name>/migrations/NNNN_*.sql`), the config JSON Schema.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic_settings import BaseSettings

from schemas.envelope import Kind
from worker.sdk.context import Context
from worker.sdk.http import Download
from worker.sdk.keys import KeyFn
from worker.sdk.records import IntegrationRecord, Link

InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)

DEFAULT_BODY_LIMIT = 1024 * 1024


class EmptyConfig(BaseModel):
    """The config of an integration that needs none."""

    model_config = ConfigDict(extra="forbid")


# --- webhooks ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A provider's HTTP request as the ingress received it. `body` is the raw bytes."""

    type: str
    method: str
    url: str  # the public URL the provider called (IW_PUBLIC_URL + path + query)
    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]
    body: bytes
    integration_id: str | None  # from /webhooks/{type}/{integration_id}
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer. Returned alone, it answers without publishing (a handshake such as
    Slack's url_verification); attached to `Accept`, it replaces the default 202."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Accept:
    """Publish this webhook; `delivery_id` is the provider's id of the delivery (dedup key)."""

    name: str
    delivery_id: str
    payload: dict[str, Any]
    external_team_id: str | None = None
    integration_id: str | None = None
    team_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    response: Reply | None = None


class WebhookRejected(Exception):
    """Refuse the request with this status (400 malformed, 401 unauthenticated, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


WebhookReceiver = Callable[[WebhookRequest, Context], Awaitable["Accept | Reply"]]


# --- handlers and actions -----------------------------------------------------------------------------


HandlerFn = Callable[[Context], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Handler:
    """Runs for messages `<type>.<kind>.<name>`; `name="*"` catches the names nobody else handles.

    key: what this kind's events are ordered by (worker/sdk/keys.py): events of one key run one
        after the other, in order; None: `per_integration`.
    requires_integration: without a matching integration row the message is parked.
    when_inactive: run even when the integration is suspended or uninstalled (else: skipped, logged).
    """

    kind: Kind
    name: str
    run: HandlerFn
    requires_integration: bool = True
    when_inactive: bool = False
    key: KeyFn | None = None


@dataclass(frozen=True, slots=True)
class Action(Generic[InT, OutT]):
    """Something the integration does on request: a command on the broker, an agent tool, a CLI entry.

    needs_user_link: the action acts as a platform user and needs that user's link (their token);
    the runtime finds it (envelope header `x-user-id`) and hands it over as `ctx.user_link`.
    key: what its calls are ordered by (worker/sdk/keys.py), computed from the call's input
    (`message.payload`); None: `unordered`, calls are independent requests.
    """

    name: str
    description: str
    input: type[InT]
    output: type[OutT]
    run: Callable[[Context, InT], Awaitable[OutT]]
    needs_user_link: bool = False
    requires_integration: bool = True
    key: KeyFn | None = None


def tool_name(type_: str, action: str) -> str:
    """The agent tool of an action: `<type>_<action>` (types have no `_`, so the first one splits)."""
    return f"{type_}_{action}"


# --- install lifecycle and OAuth ---------------------------------------------------------------------


Hook = Callable[[Context], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """Hooks of the install path; each gets a Context whose config is the validated new config.

    validate: check the config against the live service; raise InstallRejected(reason).
    pre_install: before the row is written (ctx.integration is None on a first install).
    post_install: after the row is written (register webhooks, start listeners, watches).
    pre_uninstall: before the row goes (stop listeners and watches, revoke tokens).
    """

    validate: Hook | None = None
    pre_install: Hook | None = None
    post_install: Hook | None = None
    pre_uninstall: Hook | None = None


# What happens when a linked user changes their own link's settings: (ctx, link, before, after),
# both validated by the link config model; `ctx` is the change's unit of work.
LinkConfigHook = Callable[[Context, Link, BaseModel, BaseModel], Awaitable[None]]
# What unlinking does at the provider, before the link row goes: (ctx, link); True when the
# provider revoked the link's tokens.
UnlinkHook = Callable[[Context, Link], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class UserLinks:
    """What a linked user may change of their own link, and what unlinking does at the provider
    (the platform's link routes, CLI and commands; docs/user-links.md).

    config: the model of the link's user-editable settings (Calendar's `syncEvents`, Gmail's
        filters), stored in `integration_user_link.config` under the fields' aliases; a change is
        validated with it (errors per field). None: a link has no settings a user may change.
    on_config_change: runs when they change, in the change's unit of work: what it stages
        (writes, `ctx.publish` of commands for the real work, log rows) commits with the change,
        or nothing does. `ctx.user_link` is the link.
    on_unlink: runs before the link row is deleted (stop watches, revoke the tokens where the
        provider allows) and says whether the tokens were revoked; raising refuses the unlink
        unless it is forced.
    """

    config: builtins.type[BaseModel] | None = None
    on_config_change: LinkConfigHook | None = None
    on_unlink: UnlinkHook | None = None


@dataclass(frozen=True, slots=True)
class OAuthStart:
    """Who is connecting: a team (and a user, and an integration when there is one).

    `install` is set when the platform asked for an install (`/start?install=true`): an
    integration whose install and user link are different flows (GitHub) installs then even
    with a `user_id` (the installer, linked too); the others may ignore it."""

    team_id: str
    user_id: str | None
    integration_id: str | None
    return_to: str | None
    install: bool = False


class OAuthFlow(Protocol):
    """Provider side of the runtime's OAuth routes (`/oauth/{type}/start|authorize|callback`).

    The runtime makes the flow single-use and bound to the browser that started it, and hands
    over PKCE's pair: send `code_challenge` (method S256) with the authorization request, and
    `code_verifier` with the code exchange, where the provider supports PKCE."""

    def authorize_url(
        self, ctx: Context, *, state: str, redirect_uri: str, start: OAuthStart, code_challenge: str
    ) -> str: ...

    async def complete(
        self,
        ctx: Context,
        *,
        code: str | None,
        redirect_uri: str,
        start: OAuthStart,
        code_verifier: str,
        query: Mapping[str, str],
    ) -> str | None:
        """Exchange the code and store what it gives; return the integration id when there is one.

        `code` is the callback's `code` (None when the provider sent none: a flow that needs one
        raises InstallRejected); `query` is the callback's whole query (a GitHub App's setup
        redirect carries `installation_id` and `setup_action` instead of a code)."""
        ...


# --- background work ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Service:
    """A long-running task per active integration of this type (a WebSocket listener, say).

    Exactly one worker process runs it for a given integration at a time, across all
    machines (a PostgreSQL advisory-lock lease); when that process dies another takes
    over within seconds. `run` runs until cancelled and reconnects on its own; it hands
    what it receives to the broker with `await ctx.publish_now(...)`, like a webhook would.
    """

    name: str
    run: Callable[[Context], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Schedule:
    """A periodic job of this type (renew Gmail watches daily, say), run by one worker at a time.

    The job stages commands (`ctx.publish("command", ...)`) for the real work, so each unit gets
    the worker's retries, logs and deduplication; they go out when the job's run commits.
    """

    name: str
    every_seconds: float
    run: Callable[[Context], Awaitable[None]]


# Fetches the file an attachment reference points at (`ref`: what the integration put in it, a
# provider URL or file id) with the integration's own credentials; the platform serves it.
AttachmentFetcher = Callable[[Context, IntegrationRecord, str], Awaitable[Download]]


# --- the declaration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Integration:
    type: str
    name: str
    description: str
    config: builtins.type[BaseModel] = EmptyConfig
    settings: builtins.type[BaseSettings] | None = None  # deployment settings, IW_<TYPE>_*
    webhook: WebhookReceiver | None = None
    max_body_bytes: int = DEFAULT_BODY_LIMIT
    handlers: Sequence[Handler] = ()
    actions: Sequence[Action[Any, Any]] = ()
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    oauth: OAuthFlow | None = None
    services: Sequence[Service] = ()
    schedules: Sequence[Schedule] = ()
    attachments: AttachmentFetcher | None = None
    user_links: UserLinks = field(default_factory=UserLinks)  # users' own link settings, unlinking
    migrations: Path | None = None  # e.g. Path(__file__).with_name("migrations")
    # The provider account an install is for (GitHub installation id, Slack team id), read from the
    # config; rows are unique per (type, account) then, and a team may hold several.
    external_team_id: Callable[[Any], str | None] | None = None

    def action(self, name: str) -> Action[Any, Any] | None:
        return next((a for a in self.actions if a.name == name), None)
