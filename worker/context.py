"""What a handler is handed: the message, its integration, and the runtime's facilities.

A handler never touches aio-pika or the pool. It reads through `ctx.db`
(team-scoped: `$1` is always the team id), stages its writes with
`ctx.db.write(...)`, emits result events with `ctx.emit(...)` and log rows
with `ctx.record(...)`. The runtime commits the staged writes, the events
(through the outbox) and the id of the message in one transaction after the
handler returns: all of it happens once, or none of it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import httpx
import orjson
from pydantic import BaseModel
from pydantic_settings import BaseSettings
from structlog.typing import FilteringBoundLogger

from schemas.envelope import Envelope, Kind, dumps_envelope
from schemas.events import EventData, IntegrationStatus, IntegrationStatusChanged
from schemas.rows import IntegrationRow, LogLevel, UserLinkRow
from worker import leases
from worker.cache import TTLCache
from worker.reads import ReadBatcher
from worker.secrets import SecretBox
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.tokens import LinkTokens

M = TypeVar("M", bound=BaseModel)
S = TypeVar("S", bound=BaseSettings)

EVENT_NAMESPACE = uuid.UUID("6f1c2f0e-51a4-4c53-9f6b-0c5b0a9f7e21")


def derived_id(*parts: str) -> str:
    """A stable id from stable parts: the same inputs give the same id on every re-run."""
    return str(uuid.uuid5(EVENT_NAMESPACE, "\x1f".join(parts)))


@dataclass(frozen=True)
class IntegrationRecord:
    """An integration row with its config decrypted and validated by the integration's model."""

    row: IntegrationRow
    config: BaseModel

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def team_id(self) -> str:
        return self.row.team_id

    @property
    def type(self) -> str:
        return self.row.type

    @property
    def is_active(self) -> bool:
        return self.row.is_active


@dataclass(frozen=True)
class OutboxItem:
    id: str
    exchange: str  # "results", or "" for a direct reply
    routing_key: str
    body: bytes
    correlation_id: str | None = None
    once_key: str | None = None  # published only if no event with this key ever was


@dataclass(frozen=True)
class LogEntry:
    integration_id: str
    team_id: str | None
    level: LogLevel
    key: str
    message: str
    event_id: str | None
    details: dict[str, Any] | None = None
    user_link_id: str | None = None
    duration_ms: int | None = None


@dataclass
class Staged:
    """Everything a handler asked to write; committed together with the message id."""

    writes: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    outbox: list[OutboxItem] = field(default_factory=list)
    logs: list[LogEntry] = field(default_factory=list)


class NoTeamError(RuntimeError):
    pass


class TeamDatabase:
    """Reads and staged writes, scoped to one team: `$1` is always bound to the team id.

    Reads of handlers running side by side are coalesced into one round trip (worker/reads.py).
    """

    def __init__(
        self, pool: asyncpg.Pool, team_id: str | None, staged: Staged, reads: ReadBatcher | None = None
    ) -> None:
        self._pool = pool
        self._team_id = team_id
        self._staged = staged
        self._reads = reads or ReadBatcher(pool)

    @property
    def team_id(self) -> str:
        if self._team_id is None:
            raise NoTeamError("this message has no team: the database is not available to its handler")
        return self._team_id

    def _args(self, sql: str, args: Sequence[Any]) -> tuple[Any, ...]:
        if "$1" not in sql:
            raise ValueError("team-scoped SQL must use $1, the team id")
        return (self.team_id, *args)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._reads.fetch(sql, self._args(sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        records = await self._reads.fetch(sql, self._args(sql, args))
        return records[0] if records else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        records = await self._reads.fetch(sql, self._args(sql, args))
        return records[0][0] if records else None

    def write(self, sql: str, *args: Any) -> None:
        """Stage a write; it runs after the handler returns, in the message's transaction."""
        self._staged.writes.append((sql, self._args(sql, args)))


class Context:
    def __init__(
        self,
        *,
        envelope: Envelope,
        integration: IntegrationRecord | None,
        config: BaseModel | None,
        settings: BaseSettings | None,
        runtime_settings: Settings,
        pool: asyncpg.Pool,
        http: httpx.AsyncClient,
        secrets: SecretBox,
        cache: TTLCache,
        log: FilteringBoundLogger,
        staged: Staged | None = None,
        results_exchange: str = "results",
        reply_to: str | None = None,
        correlation_id: str | None = None,
        extensions: dict[str, Any] | None = None,
        redelivered: bool = False,
        reads: ReadBatcher | None = None,
        incoming_exchange: str = "incoming",
        tokens: LinkTokens | None = None,
    ) -> None:
        self.envelope = envelope
        self.integration = integration
        self._config = config if config is not None else (integration.config if integration else None)
        self._settings = settings
        self.runtime_settings = runtime_settings
        self.http = http
        self.secrets = secrets
        self.cache = cache
        self.log = log
        self.staged = staged if staged is not None else Staged()
        self.team_id = integration.team_id if integration is not None else envelope.team_id
        self.db = TeamDatabase(pool, self.team_id, self.staged, reads)
        self.reply_to = reply_to
        self.correlation_id = correlation_id
        self.extensions = extensions or {}
        # True when this message may have run before: a retry, or a redelivery after a crash.
        # Handlers with side effects that are not idempotent check for their own earlier work then.
        self.is_repeat = envelope.attempt > 0 or redelivered
        # The link of the user an action acts for (actions declared with needs_user_link).
        self.user_link: UserLinkRow | None = None
        self._pool = pool
        self._results_exchange = results_exchange
        self._incoming_exchange = incoming_exchange
        self._tokens = tokens
        self._emitted = 0

    # --- typed access --------------------------------------------------------------------------------

    def config_as(self, model: type[M]) -> M:
        if not isinstance(self._config, model):
            raise TypeError(f"config is {type(self._config).__name__}, not {model.__name__}")
        return self._config

    def settings_as(self, model: type[S]) -> S:
        if not isinstance(self._settings, model):
            raise TypeError(f"settings are {type(self._settings).__name__}, not {model.__name__}")
        return self._settings

    def payload_as(self, model: type[M]) -> M:
        return model.model_validate(self.envelope.payload)

    @property
    def integration_id(self) -> str | None:
        return self.integration.id if self.integration is not None else None

    @property
    def tokens(self) -> LinkTokens:
        """Users' OAuth tokens (worker/tokens.py), scoped to this message's team."""
        if self._tokens is None:
            raise RuntimeError("this context has no token store")
        return self._tokens

    # --- outputs ---------------------------------------------------------------------------------------

    def emit(self, data: EventData, *, once: str | None = None) -> str:
        """Stage a result event (a `schemas.events.ResultEvent` with `data`); it is published after
        the message's transaction commits. Returns the event's id.

        once: a key; the event is published only if no event with this key ever was, however many
        messages emit it and however concurrently (the key is claimed in the commit transaction).
        """
        if not data.EVENT:
            raise TypeError(f"{type(data).__name__} has no EVENT")
        self._emitted += 1
        event_id = derived_id(self.envelope.id, data.EVENT, str(self._emitted))
        body = orjson.dumps(
            {
                "v": 1,
                "id": event_id,
                "event": data.EVENT,
                "occurred_at": datetime.now(UTC),
                "source_type": self.envelope.type,
                "team_id": self.team_id,
                "integration_id": self.integration_id,
                "causation_id": self.envelope.id,
                "trace_id": self.envelope.trace_id,
                "data": data.model_dump(mode="json"),
            }
        )
        key = f"{self.envelope.type}:{once}" if once is not None else None
        self.staged.outbox.append(OutboxItem(event_id, self._results_exchange, data.EVENT, body, once_key=key))
        return event_id

    def publish(
        self,
        kind: Kind,
        name: str,
        payload: dict[str, Any],
        *,
        id: str,
        type_: str | None = None,
        integration_id: str | None = None,
        team_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Envelope:
        """Stage a message for the incoming exchange (a command for later work, one per unit so
        each gets its own retries); published after the message's transaction commits, so it
        goes out exactly when this handler's writes do. `id` is its deduplication key.
        Integration and team default to this message's (a different integration: its team
        is looked up by the worker)."""
        integration = integration_id if integration_id is not None else self.integration_id
        team = team_id if team_id is not None else (self.team_id if integration == self.integration_id else None)
        envelope = Envelope(
            id=id,
            type=type_ or self.envelope.type,
            kind=kind,
            name=name,
            integration_id=integration,
            team_id=team,
            trace_id=self.envelope.trace_id,
            headers=headers or {},
            payload=payload,
        )
        body = dumps_envelope(envelope)
        self.staged.outbox.append(OutboxItem(envelope.id, self._incoming_exchange, envelope.routing_key, body))
        return envelope

    async def save_config(self, config: BaseModel) -> None:
        """Store a new config for this message's integration now, not with the message's
        transaction: for what the provider has already changed and will not give again (a
        rotated token whose predecessor is revoked). Secret fields are encrypted."""
        if self.integration is None:
            raise RuntimeError("this message has no integration whose config could be saved")
        await self._pool.execute(
            "UPDATE integrations SET config = $3, updated_at = now() WHERE team_id = $1 AND id = $2",
            self.team_id,
            self.integration.id,
            self.secrets.seal(config),
        )
        self._config = config

    @asynccontextmanager
    async def exclusive(self, key: str, *, wait: float = 10.0) -> AsyncIterator[None]:
        """Run the block as the only holder of `key` across all workers, until this message's
        outcome commits (worker/leases.py). Busy for longer than `wait`: TransientError."""
        ttl = self.runtime_settings.lease_ttl
        async with leases.exclusive(self._pool, self.staged.writes, f"{self.envelope.type}:{key}", ttl=ttl, wait=wait):
            yield

    def set_status(self, status: IntegrationStatus, reason: str) -> None:
        """The provider changed this integration's state (app suspended, uninstalled, token revoked):
        stage the new status, publish `integration.status_changed` and log it. Nothing if unchanged.
        Messages for an integration that is not active are then skipped (Handler.when_inactive)."""
        if self.integration is None:
            raise RuntimeError("this message has no integration whose status could change")
        previous: Any = self.integration.row.status
        if previous == status:
            return
        self.db.write(
            "UPDATE integrations SET status = $3, updated_at = now() WHERE team_id = $1 AND id = $2",
            self.integration.id,
            status,
        )
        self.emit(
            IntegrationStatusChanged(
                integration_id=self.integration.id,
                type=self.envelope.type,
                status=status,
                previous_status=previous,
                reason=reason,
            )
        )
        self.record("info" if status == "active" else "warning", "status_changed", f"{status}: {reason}")

    def reply(self, body: dict[str, Any]) -> None:
        """Stage the answer to a request that carried `reply_to` (agent tool calls over the broker)."""
        if not self.reply_to:
            return
        item_id = derived_id(self.envelope.id, "reply")
        self.staged.outbox.append(OutboxItem(item_id, "", self.reply_to, orjson.dumps(body), self.correlation_id))

    def record(
        self,
        level: LogLevel,
        key: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        user_link_id: str | None = None,
        duration_ms: int | None = None,
    ) -> None:
        """Stage an `integration_logs` row (written in the message's transaction)."""
        if self.integration is None:
            self.log.info("log row without integration", key=key, level=level, message=message)
            return
        self.staged.logs.append(
            LogEntry(
                self.integration.id,
                self.team_id,
                level,
                key,
                message,
                self.envelope.id,
                details,
                user_link_id,
                duration_ms,
            )
        )


class IngressContext:
    """What a webhook receiver may use: settings, secrets, a cache, HTTP, and unscoped lookups."""

    def __init__(
        self,
        *,
        type_: str,
        settings: BaseSettings | None,
        runtime_settings: Settings,
        pool: asyncpg.Pool | None,
        http: httpx.AsyncClient,
        secrets: SecretBox,
        cache: TTLCache,
        log: FilteringBoundLogger,
        load_integration: Any,
        tokens: LinkTokens | None = None,
        publish: Callable[[Envelope], Awaitable[None]] | None = None,
        install: Callable[..., Awaitable[IntegrationRecord]] | None = None,
    ) -> None:
        self.type = type_
        self._settings = settings
        self.runtime_settings = runtime_settings
        self._pool = pool
        self.http = http
        self.secrets = secrets
        self.cache = cache
        self.log = log
        self._load_integration = load_integration
        self._tokens = tokens
        self._publish = publish
        self._install = install

    @property
    def tokens(self) -> LinkTokens:
        """Users' OAuth tokens; an OAuth callback stores a link with `ctx.tokens.save(...)`."""
        if self._tokens is None:
            raise RuntimeError("this context has no token store")
        return self._tokens

    async def publish(self, envelope: Envelope) -> None:
        """Publish onto the incoming exchange, confirmed (raises BrokerUnavailable)."""
        if self._publish is None:
            raise RuntimeError("this context cannot publish")
        await self._publish(envelope)

    async def install(self, *, team_id: str, user_id: str | None, config: dict[str, Any]) -> IntegrationRecord:
        """Install this type for a team through the install path, as `integration-worker install`
        would (for an OAuth connect that finds none installed: an existing one is reconfigured).
        A refusal raises `InstallRejected` with the reason."""
        if self._install is None:
            raise RuntimeError("this context cannot install")
        return await self._install(self.type, team_id=team_id, user_id=user_id, config=config)

    def settings_as(self, model: type[S]) -> S:
        if not isinstance(self._settings, model):
            raise TypeError(f"settings are {type(self._settings).__name__}, not {model.__name__}")
        return self._settings

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        if self._pool is None:
            raise RuntimeError("the ingress has no database")
        record: asyncpg.Record | None = await self._pool.fetchrow(sql, *args)
        return record

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        if self._pool is None:
            raise RuntimeError("the ingress has no database")
        records: list[asyncpg.Record] = await self._pool.fetch(sql, *args)
        return records

    async def execute(self, sql: str, *args: Any) -> str:
        """A write of the ingress itself (OAuth callbacks store what they receive)."""
        if self._pool is None:
            raise RuntimeError("the ingress has no database")
        status: str = await self._pool.execute(sql, *args)
        return status

    async def integration(self, integration_id: str) -> IntegrationRecord | None:
        """An integration of this type by id, config decrypted and validated; None if absent."""
        record: IntegrationRecord | None = await self._load_integration(self.type, integration_id)
        return record


class BackgroundContext:
    """What a Service or Schedule may use: unscoped reads, publishing onto the incoming exchange,
    and the integration it runs for (services) or None (schedules)."""

    def __init__(
        self,
        *,
        type_: str,
        integration: IntegrationRecord | None,
        settings: BaseSettings | None,
        runtime_settings: Settings,
        pool: asyncpg.Pool,
        http: httpx.AsyncClient,
        secrets: SecretBox,
        cache: TTLCache,
        log: FilteringBoundLogger,
        publish: Any,
    ) -> None:
        self.type = type_
        self.integration = integration
        self._settings = settings
        self.runtime_settings = runtime_settings
        self._pool = pool
        self.http = http
        self.secrets = secrets
        self.cache = cache
        self.log = log
        self._publish = publish

    def config_as(self, model: type[M]) -> M:
        config = self.integration.config if self.integration is not None else None
        if not isinstance(config, model):
            raise TypeError(f"config is {type(config).__name__}, not {model.__name__}")
        return config

    def settings_as(self, model: type[S]) -> S:
        if not isinstance(self._settings, model):
            raise TypeError(f"settings are {type(self._settings).__name__}, not {model.__name__}")
        return self._settings

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        records: list[asyncpg.Record] = await self._pool.fetch(sql, *args)
        return records

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        record: asyncpg.Record | None = await self._pool.fetchrow(sql, *args)
        return record

    async def publish(self, envelope: Envelope) -> None:
        """Publish an envelope onto the incoming exchange and wait for the broker's confirm."""
        await self._publish(envelope)
