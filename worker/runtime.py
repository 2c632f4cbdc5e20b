"""The runtime: settings, registry, pool, broker, HTTP client, secrets; shared by ingress and worker."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import asyncpg
import httpx
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings
from structlog.typing import FilteringBoundLogger

from schemas.envelope import Envelope, dumps_envelope
from schemas.rows import IntegrationRow
from worker import migrations, store
from worker.broker import Broker, Topology, Unroutable
from worker.cache import TTLCache
from worker.context import BackgroundContext, Context, IngressContext, IntegrationRecord, OutboxItem, Staged
from worker.db import Conn, create_pool
from worker.errors import PermanentError, _validation_summary
from worker.integration import InstallRejected, Registry
from worker.logging import get_logger
from worker.reads import ReadBatcher
from worker.redact import redact, register_secret
from worker.secrets import SecretBox, SecretDecryptError
from worker.settings import Settings
from worker.tokens import LinkTokens, TokenStore

_RECORD_CACHE_SIZE = 4096


class Runtime:
    def __init__(self, settings: Settings, registry: Registry) -> None:
        settings.check_production()
        self.settings = settings
        self.registry = registry
        self.secrets = SecretBox([key.get_secret_value() for key in settings.secret_keys])
        self.topology = Topology(
            prefix=settings.broker_prefix,
            types=registry.types(),
            retry_delays=tuple(settings.retry_delays),
            delivery_limit=settings.delivery_limit,
        )
        self.broker = Broker(settings.amqp_url.get_secret_value(), self.topology)
        self._pool: asyncpg.Pool | None = None
        self.reads: ReadBatcher | None = None
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(20.0, connect=5.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            headers={"User-Agent": "integration-worker/0.1"},
        )
        self.integration_settings: dict[str, BaseSettings | None] = {}
        for integration in registry:
            instance = integration.settings() if integration.settings is not None else None
            self.integration_settings[integration.type] = instance
            if instance is not None:
                _register_secret_fields(instance)
        for value in (
            settings.signing_key,
            settings.admin_token,
            settings.service_token,
            *settings.secret_keys,
        ):
            if value is not None:
                register_secret(value.get_secret_value())
        self.caches: dict[str, TTLCache] = {integration.type: TTLCache() for integration in registry}
        self._records: OrderedDict[tuple[str, str], IntegrationRecord] = OrderedDict()
        self.extensions: dict[str, Any] = {}
        self.tokens = TokenStore(self)
        self.log = get_logger(component="runtime")

    # --- lifecycle -----------------------------------------------------------------------------------

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the runtime has no database pool: call start()")
        return self._pool

    async def start(self, *, migrate: bool = True, broker: bool = True, wait_for_broker: bool = True) -> None:
        """Pool, migrations, broker. A start that fails (or is cancelled) closes the pool it made,
        so starting again does not leak one."""
        self._pool = await create_pool(self.settings)
        try:
            self.reads = ReadBatcher(self._pool)
            if migrate:
                await self.migrate()
            if broker:
                if wait_for_broker:
                    await self.broker.connect_with_retry()
                else:
                    await self.broker.connect()
        except BaseException:
            await self._pool.close()
            self._pool = None
            raise

    async def migrate(self) -> list[migrations.Migration]:
        pending = migrations.all_migrations(self.registry.migration_dirs())
        async with self.pool.acquire() as conn:
            return await migrations.apply(conn, self.settings.database_schema, pending)

    async def stop(self) -> None:
        await self.broker.close()
        await self.http.aclose()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # --- integrations -----------------------------------------------------------------------------------

    def record(self, row: IntegrationRow) -> IntegrationRecord:
        """The row with its config decrypted and validated; PermanentError if that is impossible."""
        key = (row.id, row.updated_at.isoformat())
        cached = self._records.get(key)
        if cached is not None:
            self._records.move_to_end(key)
            return cached
        integration = self.registry.get(row.type)
        if integration is None:
            raise PermanentError(f"integration {row.id} has type {row.type!r}, which this worker does not know")
        try:
            config = integration.config.model_validate(self.secrets.open(row.config))
        except ValidationError as exc:
            raise PermanentError(f"integration {row.id} has an invalid config: {_validation_summary(exc)}") from None
        except SecretDecryptError as exc:
            raise PermanentError(f"integration {row.id}: {exc}") from None
        record = IntegrationRecord(row, config)
        self._records[key] = record
        if len(self._records) > _RECORD_CACHE_SIZE:
            self._records.popitem(last=False)
        return record

    async def integration(self, type_: str | None, integration_id: str) -> IntegrationRecord | None:
        rows = await store.integrations_for(self.pool, [integration_id], [], [])
        if not rows or (type_ is not None and rows[0].type != type_):
            return None
        return self.record(rows[0])

    # --- contexts --------------------------------------------------------------------------------------

    def context(
        self,
        envelope: Envelope,
        record: IntegrationRecord | None,
        *,
        log: FilteringBoundLogger,
        staged: Staged | None = None,
        config: BaseModel | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        redelivered: bool = False,
    ) -> Context:
        return Context(
            envelope=envelope,
            integration=record,
            config=config,
            settings=self.integration_settings.get(envelope.type),
            runtime_settings=self.settings,
            pool=self.pool,
            http=self.http,
            secrets=self.secrets,
            cache=self._cache(envelope.type),
            log=log,
            staged=staged,
            results_exchange=self.topology.results,
            reply_to=reply_to,
            correlation_id=correlation_id,
            extensions={"runtime": self, **self.extensions},
            redelivered=redelivered,
            reads=self.reads,
            incoming_exchange=self.topology.incoming,
            tokens=LinkTokens(self.tokens, record.team_id if record is not None else envelope.team_id, envelope),
        )

    def _cache(self, type_: str) -> TTLCache:
        """The type's cache (every registered type has one from the start; no throwaway per message)."""
        cache = self.caches.get(type_)
        if cache is None:
            cache = self.caches[type_] = TTLCache()
        return cache

    def ingress_context(self, type_: str) -> IngressContext:
        return IngressContext(
            type_=type_,
            settings=self.integration_settings.get(type_),
            runtime_settings=self.settings,
            pool=self._pool,
            http=self.http,
            secrets=self.secrets,
            cache=self._cache(type_),
            log=get_logger(type=type_),
            load_integration=self.integration,
            tokens=LinkTokens(self.tokens, None, None),
            publish=self.publish_envelope,
            install=self._install_for_ingress,
        )

    async def _install_for_ingress(
        self, type_: str, *, team_id: str, user_id: str | None, config: dict[str, Any]
    ) -> IntegrationRecord:
        from worker.install import InstallError, InstallRequest, install  # noqa: PLC0415 - install imports the runtime

        try:
            record, _ = await install(self, InstallRequest(type_, team_id, config, user_id=user_id, source="oauth"))
        except InstallError as exc:
            raise InstallRejected(exc.message) from None
        return record

    def background_context(self, type_: str, record: IntegrationRecord | None) -> BackgroundContext:
        return BackgroundContext(
            type_=type_,
            integration=record,
            settings=self.integration_settings.get(type_),
            runtime_settings=self.settings,
            pool=self.pool,
            http=self.http,
            secrets=self.secrets,
            cache=self._cache(type_),
            log=get_logger(type=type_, integration_id=record.id if record else None),
            publish=self.publish_envelope,
        )

    async def publish_envelope(self, envelope: Envelope) -> None:
        """Onto the incoming exchange, confirmed (raises BrokerUnavailable)."""
        await self.broker.publish(
            self.topology.incoming, envelope.routing_key, dumps_envelope(envelope), message_id=envelope.id
        )

    # --- committing outside the worker (install, OAuth) ----------------------------------------------------

    async def commit(self, staged: Staged, *, conn: Conn | None = None) -> None:
        """Apply staged writes, outbox and logs in one transaction, then publish the outbox."""
        if conn is None:
            async with self.pool.acquire() as own, own.transaction():
                written = await self._apply(own, staged)
        else:
            written = await self._apply(conn, staged)
        await self.publish_outbox([item for item in staged.outbox if item.id in written])

    async def _apply(self, conn: Conn, staged: Staged) -> set[str]:
        await store.run_writes(conn, staged.writes)
        written = await store.insert_outbox(conn, staged.outbox)
        await store.insert_logs(conn, staged.logs)
        return written

    async def publish_outbox(self, items: list[OutboxItem]) -> bool:
        """Publish committed outbox items (confirms pipelined) and delete those the broker took;
        False when some are left for the relay. A reply whose caller is gone (its queue deleted:
        the broker returns it) is done, not retried: nobody is left to answer."""
        if not items:
            return True
        outcomes = await asyncio.gather(
            *(
                self.broker.publish(i.exchange, i.routing_key, i.body, message_id=i.id, correlation_id=i.correlation_id)
                for i in items
            ),
            return_exceptions=True,
        )
        done = [i.id for i, outcome in zip(items, outcomes, strict=True) if outcome is None or caller_gone(i, outcome)]
        if done:
            await store.delete_outbox(self.pool, done)
        if len(done) == len(items):
            return True
        errors = {f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)}
        self.log.warning(
            "result events left in the outbox for the relay",
            error=redact("; ".join(sorted(errors))),
            count=len(items) - len(done),
        )
        return False


def caller_gone(item: OutboxItem, outcome: object) -> bool:
    """A reply (default exchange) the broker returned: the caller's queue is gone."""
    return item.exchange == "" and isinstance(outcome, Unroutable)


def _register_secret_fields(model: BaseSettings) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())
