"""What an integration declares, and the registry that holds them.

An integration is one `Integration` value in `integrations/<name>/__init__.py`:

    integration = Integration(
        type="github", name="GitHub", description="...",
        config=GithubConfig, settings=GithubSettings,
        webhook=verify.receive,                      # the ingress calls it for POST /webhooks/github
        handlers=[Handler("webhook", "pull_request", pull_requests.handle), ...],
        actions=[Action("comment", "Comment on an issue", CommentInput, CommentOutput, comment.run)],
        lifecycle=Lifecycle(validate=..., post_install=...),
    )

and one line in `integrations/registry.py`. The runtime derives everything
else: queues, the command of each action (`<type>.command.<action>`), the
migrations to apply (`integrations/<name>/migrations/NNNN_*.sql`), the
config JSON Schema.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic_settings import BaseSettings

from schemas.envelope import KINDS, Kind, valid_name, valid_type

if TYPE_CHECKING:
    from worker.context import BackgroundContext, Context, IngressContext, IntegrationRecord

InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)

DEFAULT_BODY_LIMIT = 1024 * 1024


class EmptyConfig(BaseModel):
    """The config of an integration that needs none."""

    model_config = ConfigDict(extra="forbid")


# --- webhooks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's HTTP request as the ingress received it. `body` is the raw bytes."""

    type: str
    method: str
    url: str  # the public URL the provider called (IW_PUBLIC_URL + path + query)
    headers: Mapping[str, str]  # case-insensitive
    query: Mapping[str, str]
    body: bytes
    integration_id: str | None  # from /webhooks/{type}/{integration_id}
    received_at: datetime


@dataclass(frozen=True)
class Reply:
    """An HTTP answer. Returned alone, it answers without publishing (a handshake such as
    Slack's url_verification); attached to `Accept`, it replaces the default 202."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


@dataclass(frozen=True)
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


WebhookReceiver = Callable[[WebhookRequest, "IngressContext"], Awaitable["Accept | Reply"]]


# --- handlers and actions -----------------------------------------------------------------------------


HandlerFn = Callable[["Context"], Awaitable[None]]


@dataclass(frozen=True)
class Handler:
    """Runs for messages `<type>.<kind>.<name>`; `name="*"` catches the names nobody else handles.

    requires_integration: without a matching integration row the message is parked.
    when_inactive: run even when the integration is suspended or uninstalled (else: skipped, logged).
    """

    kind: Kind
    name: str
    run: HandlerFn
    requires_integration: bool = True
    when_inactive: bool = False


@dataclass(frozen=True)
class Action(Generic[InT, OutT]):
    """Something the integration does on request: a command on the broker, an agent tool, a CLI entry.

    needs_user_link: the action acts as a platform user and needs that user's link (their token).
    """

    name: str
    description: str
    input: type[InT]
    output: type[OutT]
    run: Callable[[Context, InT], Awaitable[OutT]]
    needs_user_link: bool = False
    requires_integration: bool = True


# --- install lifecycle and OAuth ---------------------------------------------------------------------


class InstallRejected(Exception):
    """The live service refused the config (bad token, unreachable host): the message says why."""


Hook = Callable[["Context"], Awaitable[None]]


@dataclass(frozen=True)
class Lifecycle:
    """Hooks of the install path; each gets a Context whose `config` is the validated new config.

    validate: check the config against the live service; raise InstallRejected(reason).
    pre_install: before the row is written (ctx.integration is None on a first install).
    post_install: after the row is written (register webhooks, start listeners, watches).
    pre_uninstall: before the row goes (stop listeners and watches, revoke tokens).
    """

    validate: Hook | None = None
    pre_install: Hook | None = None
    post_install: Hook | None = None
    pre_uninstall: Hook | None = None


@dataclass(frozen=True)
class OAuthStart:
    """Who is connecting: a team (and a user, and an integration when there is one)."""

    team_id: str
    user_id: str | None
    integration_id: str | None
    return_to: str | None


class OAuthFlow(Protocol):
    """Provider side of `GET /oauth/{type}/start` and `GET /oauth/{type}/callback`."""

    def authorize_url(self, ctx: IngressContext, *, state: str, redirect_uri: str, start: OAuthStart) -> str: ...

    async def complete(self, ctx: IngressContext, *, code: str, redirect_uri: str, start: OAuthStart) -> str | None:
        """Exchange the code and store what it gives; return the integration id when there is one."""
        ...


# --- background work ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """A long-running task per active integration of this type (a WebSocket listener, say).

    Exactly one worker process runs it for a given integration at a time, across all
    machines (a PostgreSQL advisory-lock lease); when that process dies another takes
    over within seconds. `run` runs until cancelled and reconnects on its own; it hands
    what it receives to the broker with `ctx.publish(...)`, like a webhook would.
    """

    name: str
    run: Callable[[BackgroundContext], Awaitable[None]]


@dataclass(frozen=True)
class Schedule:
    """A periodic job of this type (renew Gmail watches daily, say), run by one worker at a time.

    The job should enqueue commands (`ctx.publish(kind="command", ...)`) for the real work,
    so each unit gets the worker's retries, logs and deduplication.
    """

    name: str
    every_seconds: float
    run: Callable[[BackgroundContext], Awaitable[None]]


# --- files that came with messages ------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """A file fetched from the provider."""

    content: bytes
    content_type: str | None = None


# Fetches the file an attachment reference points at (`ref`: what the integration put in it, a
# provider URL or file id) with the integration's own credentials. worker/attachments.py serves it.
AttachmentFetcher = Callable[["IngressContext", "IntegrationRecord", str], Awaitable[Download]]


# --- the declaration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Integration:
    type: str
    name: str
    description: str
    config: builtins.type[BaseModel] = EmptyConfig
    settings: builtins.type[BaseSettings] | None = None
    webhook: WebhookReceiver | None = None
    max_body_bytes: int = DEFAULT_BODY_LIMIT
    handlers: Sequence[Handler] = ()
    actions: Sequence[Action[Any, Any]] = ()
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    oauth: OAuthFlow | None = None
    services: Sequence[Service] = ()
    schedules: Sequence[Schedule] = ()
    attachments: AttachmentFetcher | None = None
    migrations: Path | None = None  # e.g. Path(__file__).with_name("migrations")
    # The provider account an install is for (GitHub installation id, Slack team id), read from the
    # config; rows are unique per (type, account) then, and a team may hold several.
    external_team_id: Callable[[Any], str | None] | None = None

    def action(self, name: str) -> Action[Any, Any] | None:
        return next((a for a in self.actions if a.name == name), None)


class RegistryError(Exception):
    pass


_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TOOL_NAME_MAX = 64  # OpenAI function names: ^[a-zA-Z0-9_-]{1,64}$


class Registry:
    """Every integration, by type. Checks itself when built: a broken declaration fails start-up."""

    def __init__(self, integrations: Sequence[Integration]) -> None:
        from worker.platform import PLATFORM  # noqa: PLC0415 - the platform type is itself an Integration

        self._by_type: dict[str, Integration] = {}
        problems: list[str] = []
        for integration in (PLATFORM, *integrations):
            problems += _check(integration)
            if integration.type in self._by_type:
                problems.append(f"type {integration.type!r} is declared twice")
            self._by_type[integration.type] = integration
        if problems:
            raise RegistryError("invalid integration registry:\n  - " + "\n  - ".join(problems))
        self._handlers: dict[tuple[str, str, str], Handler] = {}
        for integration in self._by_type.values():
            for handler in integration.handlers:
                self._handlers[(integration.type, handler.kind, handler.name)] = handler
            for action in integration.actions:
                self._handlers[(integration.type, "command", action.name)] = command_handler(action)

    def __iter__(self) -> Any:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)

    def types(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_type))

    def get(self, type_: str) -> Integration | None:
        return self._by_type.get(type_)

    def handler(self, type_: str, kind: str, name: str) -> Handler | None:
        return self._handlers.get((type_, kind, name)) or self._handlers.get((type_, kind, "*"))

    def migration_dirs(self) -> list[tuple[str, Path]]:
        return [(i.type, d) for i in self._by_type.values() if (d := i.migrations) is not None]


def _check(integration: Integration) -> list[str]:
    where = f"integration {integration.type!r}"
    problems = []
    if not valid_type(integration.type):
        problems.append(f"{where}: type must match [a-z][a-z0-9-]*")
    if not integration.name or not integration.description:
        problems.append(f"{where}: name and description are required")
    if not (isinstance(integration.config, type) and issubclass(integration.config, BaseModel)):
        problems.append(f"{where}: config must be a pydantic model class")
    else:
        try:
            integration.config.model_json_schema()
        except Exception as exc:
            problems.append(f"{where}: config model has no JSON Schema: {exc}")
    seen: set[tuple[str, str]] = set()
    for handler in integration.handlers:
        if handler.kind not in KINDS:
            problems.append(f"{where}: handler kind {handler.kind!r} is not one of {', '.join(KINDS)}")
        if handler.name != "*" and not valid_name(handler.name):
            problems.append(f"{where}: handler name {handler.name!r} is not a valid name")
        if (handler.kind, handler.name) in seen:
            problems.append(f"{where}: two handlers for {handler.kind}.{handler.name}")
        seen.add((handler.kind, handler.name))
        if not inspect.iscoroutinefunction(handler.run):
            problems.append(f"{where}: handler {handler.kind}.{handler.name} must be an async function")
    names: set[str] = set()
    for action in integration.actions:
        if not _ACTION_RE.match(action.name):
            problems.append(f"{where}: action name {action.name!r} must match [a-z][a-z0-9_]*")
        if action.name in names:
            problems.append(f"{where}: action {action.name!r} is declared twice")
        names.add(action.name)
        if ("command", action.name) in seen:
            problems.append(f"{where}: action {action.name!r} clashes with a command handler of that name")
        if not action.description:
            problems.append(f"{where}: action {action.name!r} needs a description (agents read it)")
        if len(tool_name(integration.type, action.name)) > _TOOL_NAME_MAX:
            problems.append(
                f"{where}: tool name {tool_name(integration.type, action.name)!r} is longer than {_TOOL_NAME_MAX}"
            )
        for role, model in (("input", action.input), ("output", action.output)):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                problems.append(f"{where}: action {action.name!r} {role} must be a pydantic model class")
                continue
            try:
                schema = model.model_json_schema()
            except Exception as exc:
                problems.append(f"{where}: action {action.name!r} {role} model has no JSON Schema: {exc}")
                continue
            if schema.get("type") != "object":
                problems.append(f"{where}: action {action.name!r} {role} must be a JSON object (tools take objects)")
        if not inspect.iscoroutinefunction(action.run):
            problems.append(f"{where}: action {action.name!r} must be an async function")
    for hook_name in ("validate", "pre_install", "post_install", "pre_uninstall"):
        hook = getattr(integration.lifecycle, hook_name)
        if hook is not None and not inspect.iscoroutinefunction(hook):
            problems.append(f"{where}: lifecycle hook {hook_name} must be an async function")
    if integration.migrations is not None and not integration.migrations.is_dir():
        problems.append(f"{where}: migrations folder {integration.migrations} does not exist")
    return problems


def command_handler(action: Action[Any, Any]) -> Handler:
    """The handler of `<type>.command.<action>` (worker/actions.py): validate the input, find the
    acting user's link, run, answer (reply, stored result, log row)."""
    from worker import actions  # noqa: PLC0415 - actions imports the context, which this module only types

    async def run(ctx: Context) -> None:
        await actions.run(ctx, action)

    return Handler("command", action.name, run, requires_integration=action.requires_integration)


def tool_name(type_: str, action: str) -> str:
    """The agent tool of an action: `<type>_<action>` (types have no `_`, so the first one splits)."""
    return f"{type_}_{action}"


def load_registry(spec: str) -> Registry:
    """`module:attribute`, for example `integrations.registry:REGISTRY`."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"cannot import registry module {module_name!r}: {exc}") from exc
    registry = getattr(module, attribute or "REGISTRY", None)
    if not isinstance(registry, Registry):
        raise RegistryError(f"{spec} is not a worker.integration.Registry")
    return registry
