"""`Context`: what integration code is handed, the same class everywhere it runs (handlers,
actions, install hooks, webhook receivers, OAuth flows, services, schedules).

Two ways of acting, under different names:

    staged (committed with the unit of work, or not at all)
        ctx.db.write(...)      a write of the integration's own tables
        ctx.emit(event)        a result event for other services
        ctx.publish(...)       a message for later work (a command), onto the incoming exchange
        ctx.record(...)        an `integration_logs` row
        ctx.set_status(...)    the integration's status, with its event and log row
    immediate (done when the call returns)
        await ctx.publish_now(envelope)   onto the incoming exchange, confirmed by the broker
        await ctx.save_config(config)     what the provider already changed (a rotated token)
        await ctx.install(...)            the install path (an OAuth callback that installs)

A handler's unit of work is committed by the worker with the message's inbox id; an install
hook's with the install; a scheduled job's with the job's run. Services and webhook receivers
have none: staging there raises, they act immediately.

Reading: `ctx.db` (the team's rows of the integration's own tables), `ctx.integrations` and
`ctx.links` (typed access to the core tables), `ctx.tokens` (users' OAuth tokens).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import orjson
from pydantic import BaseModel
from pydantic_settings import BaseSettings
from structlog.typing import FilteringBoundLogger

from schemas.envelope import KEY_HEADER, Envelope, Kind, dumps_envelope
from schemas.events import EventData, IntegrationStatus, IntegrationStatusChanged
from schemas.rows import LogLevel
from worker.core.cache import TTLCache
from worker.core.ids import derived_id
from worker.core.logging import get_logger
from worker.core.settings import Settings
from worker.sdk.backend import Backend
from worker.sdk.db import TeamDatabase, UnscopedReads
from worker.sdk.facades import Integrations, Links
from worker.sdk.records import IntegrationRecord, Link
from worker.sdk.tokens import Tokens
from worker.sdk.unit import LogEntry, OutboxItem, Staged

M = TypeVar("M", bound=BaseModel)
S = TypeVar("S", bound=BaseSettings)


class Context:
    """Longer than the ~250 lines a class gets here, on purpose: it is the one object an
    integration is handed, so every verb it may use is a method here, each a few lines that hand
    over to the backend (worker/sdk/backend.py) or a facade (worker/sdk/facades.py)."""

    __slots__ = (
        "_backend",
        "_config",
        "_db",
        "_emitted",
        "_log",
        "correlation_id",
        "envelope_or_none",
        "integration",
        "is_repeat",
        "reply_to",
        "staged",
        "team_id",
        "type",
        "user_link",
    )

    def __init__(
        self,
        backend: Backend,
        type_: str,
        *,
        envelope: Envelope | None = None,
        integration: IntegrationRecord | None = None,
        config: BaseModel | None = None,
        staged: Staged | None = None,
        team_id: str | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        redelivered: bool = False,
        log: FilteringBoundLogger | None = None,
    ) -> None:
        self._backend = backend
        self.type = type_
        self.envelope_or_none = envelope
        self.integration = integration
        self._config = config if config is not None else (integration.config if integration is not None else None)
        self.staged = staged  # None: no unit of work (services, webhook receivers)
        if integration is not None:
            self.team_id: str | None = integration.team_id
        else:
            self.team_id = team_id if team_id is not None else (envelope.team_id if envelope is not None else None)
        self.reply_to = reply_to
        self.correlation_id = correlation_id
        # True when this message may have run before: a retry, or a redelivery after a crash.
        # Handlers with side effects that are not idempotent look for their own earlier work then.
        self.is_repeat = redelivered or (envelope is not None and envelope.attempt > 0)
        # The link of the user an action acts for (actions declared with needs_user_link).
        self.user_link: Link | None = None
        self._log = log
        self._db: TeamDatabase | None = None
        self._emitted = 0

    # --- what is at hand -----------------------------------------------------------------------------

    @property
    def envelope(self) -> Envelope:
        """The message being handled."""
        if self.envelope_or_none is None:
            raise RuntimeError("this context runs for no message")
        return self.envelope_or_none

    @property
    def log(self) -> FilteringBoundLogger:
        if self._log is None:
            envelope = self.envelope_or_none
            self._log = get_logger(
                type=self.type,
                team_id=self.team_id,
                integration_id=self.integration_id,
                **(
                    {"event_id": envelope.id, "name": envelope.name, "trace_id": envelope.trace_id}
                    if envelope is not None
                    else {}
                ),
            )
        return self._log

    @property
    def http(self) -> httpx.AsyncClient:
        return self._backend.http

    @property
    def cache(self) -> TTLCache:
        """An in-process cache of this integration type (tokens minted, bot identities)."""
        return self._backend.cache(self.type)

    @property
    def runtime_settings(self) -> Settings:
        return self._backend.settings

    @property
    def integration_id(self) -> str | None:
        return self.integration.id if self.integration is not None else None

    @property
    def db(self) -> TeamDatabase:
        if self._db is None:
            self._db = TeamDatabase(self._backend, self.team_id, self.staged)
        return self._db

    @property
    def unscoped_db(self) -> UnscopedReads:
        return UnscopedReads(self._backend)

    @property
    def integrations(self) -> Integrations:
        return Integrations(self._backend, self.type, self.team_id, self.integration)

    @property
    def links(self) -> Links:
        return Links(self._backend, self.type, self.integration)

    @property
    def tokens(self) -> Tokens:
        return Tokens(self._backend.tokens, self.team_id, self.envelope_or_none)

    def bound(self, integration: IntegrationRecord) -> Context:
        """A context like this one, for `integration` (its team, its links), with no unit of work:
        what an OAuth flow or a webhook receiver uses once it knows the integration."""
        return Context(self._backend, self.type, integration=integration, log=self._log)

    def config_as(self, model: type[M]) -> M:
        if not isinstance(self._config, model):
            raise TypeError(f"config is {type(self._config).__name__}, not {model.__name__}")
        return self._config

    def settings_as(self, model: type[S]) -> S:
        settings = self._backend.integration_settings(self.type)
        if not isinstance(settings, model):
            raise TypeError(f"settings are {type(settings).__name__}, not {model.__name__}")
        return settings

    def payload_as(self, model: type[M]) -> M:
        return model.model_validate(self.envelope.payload)

    # --- staged ------------------------------------------------------------------------------------------

    def _unit(self) -> Staged:
        if self.staged is None:
            raise RuntimeError("this context has no unit of work: act with publish_now, or from a handler")
        return self.staged

    def sent_once(self, once: str) -> bool:
        """True when an event or message with this `once` key is known to have gone out already:
        a handler may skip building it. False means "not known here", not "not yet": `emit` and
        `publish` with `once=` still decide, in the commit."""
        return self._backend.emitted_once(self._once_key(once))

    def _once_key(self, once: str) -> str:
        """A `once` key as claimed: per integration type."""
        return f"{self.type}:{once}"

    def emit(self, data: EventData, *, once: str | None = None) -> str:
        """Stage a result event (a `schemas.events.ResultEvent` with `data`), published after the
        unit commits. Returns the event's id, stable across re-runs of the message.

        once: a key; the event is published only if no event with this key ever was, however many
        messages emit it and however concurrently (the key is claimed in the commit transaction).
        """
        if not data.EVENT:
            raise TypeError(f"{type(data).__name__} has no EVENT")
        staged = self._unit()
        envelope = self.envelope
        self._emitted += 1
        event_id = derived_id(envelope.id, data.EVENT, str(self._emitted))
        key = self._once_key(once) if once is not None else None
        if key is not None and self._backend.emitted_once(key):
            return event_id  # published long ago: the commit would refuse it anyway
        head = {
            "v": 1,
            "id": event_id,
            "event": data.EVENT,
            "occurred_at": datetime.now(UTC),
            "source_type": envelope.type,
            "team_id": self.team_id,
            "integration_id": self.integration_id,
            "causation_id": envelope.id,
            "trace_id": envelope.trace_id,
        }

        def render() -> bytes:
            return orjson.dumps({**head, "data": data.model_dump(mode="json")})

        results = self._backend.exchanges.results
        if key is None:
            staged.outbox.append(OutboxItem(event_id, results, data.EVENT, render()))
        else:
            staged.outbox.append(OutboxItem(event_id, results, data.EVENT, b"", once_key=key, render=render))
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
        once: str | None = None,
    ) -> Envelope:
        """Stage a message for the incoming exchange (a command for later work, one per unit so each
        gets its own retries), published after the unit commits, so it goes out exactly when this
        unit's writes do. `id` is its deduplication key. Integration and team default to this
        context's (another integration's team is looked up by the worker).

        once: a key, as for `emit`: the message is published only if no message or event with this
        key ever was (the inbox forgets ids after IW_INBOX_RETENTION_DAYS; once keys are kept).
        """
        staged = self._unit()
        integration = integration_id if integration_id is not None else self.integration_id
        team = team_id if team_id is not None else (self.team_id if integration == self.integration_id else None)
        envelope = Envelope(
            id=id,
            type=type_ or self.type,
            kind=kind,
            name=name,
            integration_id=integration,
            team_id=team,
            trace_id=self.envelope_or_none.trace_id if self.envelope_or_none is not None else derived_id(id),
            headers=headers or {},
            payload=payload,
        )
        key = self._once_key(once) if once is not None else None
        if key is not None and self._backend.emitted_once(key):
            return envelope  # published long ago: the commit would refuse it anyway
        staged.outbox.append(
            OutboxItem(
                envelope.id,
                self._backend.exchanges.incoming_for(envelope.type),
                envelope.routing_key,
                dumps_envelope(envelope),
                once_key=key,
                headers={KEY_HEADER: self._backend.key_of(envelope)},
            )
        )
        return envelope

    def reply(self, body: dict[str, Any]) -> None:
        """Stage the answer to a request that carried `reply_to` (tool calls over the broker)."""
        if not self.reply_to:
            return
        item_id = derived_id(self.envelope.id, "reply")
        self._unit().outbox.append(OutboxItem(item_id, "", self.reply_to, orjson.dumps(body), self.correlation_id))

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
        """Stage an `integration_logs` row (written with the unit)."""
        if self.integration is None:
            self.log.info("log row without integration", key=key, level=level, message=message)
            return
        self._unit().logs.append(
            LogEntry(
                self.integration.id,
                self.team_id,
                level,
                key,
                message,
                self.envelope_or_none.id if self.envelope_or_none is not None else None,
                details,
                user_link_id,
                duration_ms,
            )
        )

    def set_status(self, status: IntegrationStatus, reason: str) -> None:
        """The provider changed this integration's state (app suspended, uninstalled, token revoked):
        stage the new status, publish `integration.status_changed` and log it. Nothing if unchanged.
        Messages for an integration that is not active are then skipped (Handler.when_inactive)."""
        if self.integration is None:
            raise RuntimeError("this context has no integration whose status could change")
        previous: Any = self.integration.status
        if previous == status:
            return
        self._unit().writes.append(self._backend.status_write(self.integration, status))
        self.emit(
            IntegrationStatusChanged(
                integration_id=self.integration.id,
                type=self.type,
                status=status,
                previous_status=previous,
                reason=reason,
            )
        )
        self.record("info" if status == "active" else "warning", "status_changed", f"{status}: {reason}")

    # --- immediate ---------------------------------------------------------------------------------------

    async def publish_now(self, envelope: Envelope) -> None:
        """Publish onto the incoming exchange now, confirmed by the broker (BrokerUnavailable
        otherwise). For services and receivers; handlers stage with `publish`."""
        await self._backend.publish_now(envelope)

    async def save_config(self, config: BaseModel) -> None:
        """Store a new config for this context's integration now, not with the unit: for what the
        provider has already changed and will not give again (a rotated token whose predecessor is
        revoked). Secret fields are encrypted."""
        if self.integration is None:
            raise RuntimeError("this context has no integration whose config could be saved")
        self.integration = await self._backend.save_config(self.integration, config)
        self._config = config

    async def install(self, *, team_id: str, user_id: str | None, config: dict[str, Any]) -> IntegrationRecord:
        """Install this type for a team through the install path, as `integration-worker install`
        would (an OAuth connect that finds none installed; an existing one is reconfigured).
        A refusal raises `InstallRejected` with the reason."""
        return await self._backend.install(self.type, team_id=team_id, user_id=user_id, config=config)

    @asynccontextmanager
    async def exclusive(self, key: str, *, wait: float = 10.0) -> AsyncIterator[None]:
        """Run the block as the only holder of `key` across all workers, until this unit commits.
        Busy for longer than `wait`: TransientError (the message is retried later)."""
        async with self._backend.exclusive(f"{self.type}:{key}", self._unit().writes, wait=wait):
            yield
