"""The runtime: settings, registry, pool, broker, HTTP client, secrets, and the pieces built on
them (records, tokens, outbox, the unit of work, the backend integrations reach). One per
process; the worker, the ingress and the platform take what they need from it."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings
from structlog.typing import FilteringBoundLogger

from schemas.envelope import KEY_HEADER, Envelope, dumps_envelope
from schemas.rows import IntegrationRow
from worker.core.logging import get_logger
from worker.core.redact import register_secret
from worker.core.secrets import SecretBox
from worker.core.settings import Settings, blank_secret_fields, env_name
from worker.runtime import migrations, store
from worker.runtime.backend import RuntimeBackend
from worker.runtime.broker import Broker, Outgoing
from worker.runtime.db import create_pool
from worker.runtime.lookups import Lookups
from worker.runtime.outbox import Outbox
from worker.runtime.records import Records
from worker.runtime.tokens import TokenStore
from worker.runtime.topology import Topology
from worker.runtime.unit_of_work import UnitOfWork
from worker.sdk.context import Context
from worker.sdk.declare import Integration
from worker.sdk.records import IntegrationRecord
from worker.sdk.registry import Registry
from worker.sdk.unit import Staged


class Runtime:
    def __init__(self, settings: Settings, registry: Registry) -> None:
        settings.check_production()
        self.settings = settings
        self.secrets = SecretBox([key.get_secret_value() for key in settings.secret_keys])
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(20.0, connect=5.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            headers={"User-Agent": "integration-worker/0.1"},
        )
        self._pool: asyncpg.Pool | None = None
        self._reads: asyncpg.Pool | None = None
        self._lookups: Lookups | None = None
        self._started = False
        # a worker in this process: per type, the shards it owns and those it consumes (readiness);
        # None from it while the worker starts
        self.consuming: Callable[[], dict[str, dict[str, int]] | None] | None = None
        self.log = get_logger(component="runtime")
        for value in (settings.signing_key, settings.admin_token, settings.service_token, *settings.secret_keys):
            if value is not None:
                register_secret(value.get_secret_value())
        self._use(registry)

    def _use(self, registry: Registry) -> None:
        settings = self.settings
        self.registry = registry
        self.topology = Topology(
            prefix=settings.broker_prefix,
            types=registry.types(),
            retry_delays=tuple(settings.retry_delays),
            delivery_limit=settings.delivery_limit,
            shards={type_: settings.shards_of(type_) for type_ in registry.types()},
            laned=frozenset(i.type for i in registry if i.webhook is not None) if settings.tenant_rate else frozenset(),
        )
        self.broker = Broker(settings.amqp_url.get_secret_value(), self.topology)
        integration_settings: dict[str, BaseSettings | None] = {}
        for integration in registry:
            instance = _without_blank_secrets(integration.settings()) if integration.settings is not None else None
            integration_settings[integration.type] = instance
            if instance is not None:
                _register_secret_fields(instance)
        self.integration_settings = integration_settings  # per type, IW_<TYPE>_*; the backend reads it live
        self.records = Records(registry, self.secrets)
        self.outbox = Outbox(lambda: self.pool, self.broker)
        self.tokens = TokenStore(
            lambda: self.pool,
            self.secrets,
            self.http,
            results_exchange=self.topology.results,
            publish_outbox=self.outbox.publish,
        )
        self.unit_of_work = UnitOfWork(lambda: self.pool, self.outbox)
        self.backend = RuntimeBackend(
            settings=settings,
            pool=lambda: self.pool,
            broker=self.broker,
            http=self.http,
            secrets=self.secrets,
            records=self.records,
            tokens=self.tokens,
            lookups=lambda: self.lookups,
            integration_settings=integration_settings,
            once=self.unit_of_work.once,
            key_of=registry.key_of,
        )

    def add_builtin(self, integration: Integration) -> None:
        """A type built into the service (the platform's own `integration` commands); before start."""
        if self._started:
            raise RuntimeError("built-in types are added before the runtime starts")
        installer = self.backend.installer
        self._use(self.registry.with_builtin(integration))
        self.backend.installer = installer

    # --- lifecycle -----------------------------------------------------------------------------------

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the runtime has no database pool: call start()")
        return self._pool

    @property
    def reads(self) -> asyncpg.Pool:
        """The pool of the batch look-ups (worker/runtime/db.py says why it is apart)."""
        if self._reads is None:
            raise RuntimeError("the runtime has no database pool: call start()")
        return self._reads

    @property
    def lookups(self) -> Lookups:
        if self._lookups is None:
            raise RuntimeError("the runtime has no database pool: call start()")
        return self._lookups

    async def start(self, *, migrate: bool = True, broker: bool = True, wait_for_broker: bool = True) -> None:
        """Pool, migrations, broker. A start that fails (or is cancelled) closes the pool it made,
        so starting again does not leak one."""
        self._started = True
        self._pool = await create_pool(self.settings)
        try:
            self._reads = await create_pool(self.settings, reads=True)
            self._lookups = Lookups(self._reads)
            if migrate:
                await self.migrate()
            if broker:
                if wait_for_broker:
                    await self.broker.connect_with_retry()
                else:
                    await self.broker.connect()
        except BaseException:
            await self._close_pools()
            raise

    async def migrate(self) -> list[migrations.Migration]:
        pending = migrations.all_migrations(self.registry.migration_dirs())
        async with self.pool.acquire() as conn:
            return await migrations.apply(conn, self.settings.database_schema, pending)

    async def stop(self) -> None:
        await self.broker.close()
        await self.http.aclose()
        await self._close_pools()

    async def _close_pools(self) -> None:
        for pool in (self._pool, self._reads):
            if pool is not None:
                await pool.close()
        self._pool = self._reads = None

    # --- integrations -----------------------------------------------------------------------------------

    def record(self, row: IntegrationRow) -> IntegrationRecord:
        """The row with its config decrypted and validated; PermanentError if that is impossible."""
        return self.records.of(row)

    async def integration(self, type_: str | None, integration_id: str) -> IntegrationRecord | None:
        rows = await store.integrations_for(self.pool, [integration_id], [], [])
        if not rows or (type_ is not None and rows[0].type != type_):
            return None
        return self.record(rows[0])

    # --- contexts and publishing ------------------------------------------------------------------------

    def context(
        self,
        envelope: Envelope,
        record: IntegrationRecord | None,
        *,
        staged: Staged | None = None,
        config: object = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        redelivered: bool = False,
        log: FilteringBoundLogger | None = None,
    ) -> Context:
        """A handler's context: its unit of work is `staged` (a fresh one by default)."""
        return Context(
            self.backend,
            envelope.type,
            envelope=envelope,
            integration=record,
            config=config,  # type: ignore[arg-type]
            staged=staged if staged is not None else Staged(),
            reply_to=reply_to,
            correlation_id=correlation_id,
            redelivered=redelivered,
            log=log,
        )

    def receiver_context(self, type_: str, record: IntegrationRecord | None = None) -> Context:
        """A context with no unit of work: webhook receivers, services, OAuth flows, fetchers."""
        return Context(self.backend, type_, integration=record)

    def outgoing(self, envelope: Envelope) -> Outgoing:
        """`envelope` as a message for its type's shards, with its ordering key (`iw-key`)."""
        return Outgoing(
            self.backend.exchanges.incoming_for(envelope.type),
            envelope.routing_key,
            dumps_envelope(envelope),
            message_id=envelope.id,
            headers={KEY_HEADER: self.registry.key_of(envelope)},
        )

    async def publish_envelope(self, envelope: Envelope) -> None:
        """Onto the incoming exchange with its ordering key, confirmed (raises BrokerUnavailable)."""
        await self.broker.publish_message(self.outgoing(envelope))

    async def commit(self, staged: Staged) -> None:
        """Commit one unit of work (an install, an OAuth callback) and publish its outbox."""
        await self.unit_of_work.commit_staged(staged)


def _without_blank_secrets(model: BaseSettings) -> BaseSettings:
    """An integration's settings with every empty or blank secret unset: no secret at all, so what
    needs it fails closed (a webhook signed with the empty key is refused, not accepted). A secret
    the settings require cannot be unset: that is a start-up error naming the variable."""
    blank = blank_secret_fields(model)
    if not blank:
        return model
    fields = type(model).model_fields
    required = [name for name in blank if fields[name].is_required()]
    if required:
        names = ", ".join(env_name(type(model), name) for name in required)
        raise ValueError(f"{names}: set but blank; a secret must not be empty")
    log = get_logger(component="runtime")
    for name in blank:
        log.warning("secret set but blank: treated as unset", setting=env_name(type(model), name))
    return model.model_copy(update=dict.fromkeys(blank))


def _register_secret_fields(model: BaseSettings) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())
