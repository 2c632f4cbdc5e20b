"""The runtime as integration code reaches it: the SDK's `Backend` protocol, implemented over the
pool, the broker, the token store and the leases. Contexts hold one of these; nothing else of
the runtime is within an integration's reach."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import asyncpg
import httpx
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from schemas.envelope import KEY_HEADER, Envelope, dumps_envelope
from worker.core.cache import TTLCache
from worker.core.secrets import SecretBox
from worker.core.settings import Settings
from worker.runtime import leases, store
from worker.runtime.broker import Broker
from worker.runtime.lookups import Lookups
from worker.runtime.records import Records
from worker.runtime.tokens import TokenStore
from worker.runtime.unit_of_work import OnceKeys
from worker.sdk.backend import Exchanges, Lookup, Row
from worker.sdk.errors import PermanentError
from worker.sdk.records import IntegrationRecord, Link
from worker.sdk.unit import Write

# The install path lives above the runtime (worker/platform/install.py); the platform hands it
# over when it is built. A process without the platform cannot install.
Installer = Callable[[str, str, "str | None", dict[str, Any]], Awaitable[IntegrationRecord]]


class RuntimeBackend:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: Callable[[], asyncpg.Pool],
        broker: Broker,
        http: httpx.AsyncClient,
        secrets: SecretBox,
        records: Records,
        tokens: TokenStore,
        lookups: Callable[[], Lookups],
        integration_settings: dict[str, BaseSettings | None],
        once: OnceKeys,
        key_of: Callable[[Envelope], str],
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._broker = broker
        self._http = http
        self._secrets = secrets
        self._records = records
        self._tokens = tokens
        self._lookups = lookups
        self._integration_settings = integration_settings
        self._once = once
        self.key_of = key_of
        self._caches: dict[str, TTLCache] = {type_: TTLCache() for type_ in integration_settings}
        topology = broker.topology
        self._exchanges = Exchanges(
            incoming=topology.incoming,
            results=topology.results,
            shards={type_: topology.shard_exchange(type_) for type_ in topology.types},
        )
        self.installer: Installer | None = None

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    @property
    def exchanges(self) -> Exchanges:
        return self._exchanges

    @property
    def tokens(self) -> TokenStore:
        return self._tokens

    def integration_settings(self, type_: str) -> BaseSettings | None:
        return self._integration_settings.get(type_)

    def cache(self, type_: str) -> TTLCache:
        cache = self._caches.get(type_)
        if cache is None:
            cache = self._caches[type_] = TTLCache()
        return cache

    # --- the integrations' own tables --------------------------------------------------------------------

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Row]:
        return cast(Sequence[Row], await self._pool().fetch(sql, *args))

    async def lookup(self, lookup: Lookup) -> Row | None:
        return await self._lookups().lookup(lookup)

    # --- the core tables ---------------------------------------------------------------------------------

    async def integration(self, integration_id: str, *, fresh: bool = False) -> IntegrationRecord | None:
        rows = await store.integrations_for(self._pool(), [integration_id], [], [])
        return self._records.of(rows[0], cached=not fresh) if rows else None

    async def integrations(
        self, type_: str, *, team_id: str | None = None, active_only: bool = False
    ) -> list[IntegrationRecord]:
        rows = await store.integrations_of_type(self._pool(), type_, team_id=team_id, active_only=active_only)
        return [self._records.of(row) for row in rows]

    async def save_config(self, record: IntegrationRecord, config: BaseModel) -> IntegrationRecord:
        try:
            row = await store.save_config(self._pool(), record.id, record.team_id, self._secrets.seal(config))
        except LookupError as exc:
            raise PermanentError(str(exc)) from None
        return self._records.of(row)

    def status_write(self, record: IntegrationRecord, status: str) -> Write:
        return (store.STATUS_WRITE, (record.team_id, record.id, status))

    async def links(
        self,
        integration_id: str,
        team_id: str,
        *,
        link_id: str | None = None,
        user_ids: Sequence[str] | None = None,
        external_user_ids: Sequence[str] | None = None,
        active_only: bool = False,
    ) -> list[Link]:
        return await store.links(
            self._pool(),
            integration_id,
            team_id,
            link_id=link_id,
            user_ids=user_ids,
            external_user_ids=external_user_ids,
            active_only=active_only,
        )

    async def links_across_teams(self, type_: str, *, external_user_id: str | None = None) -> list[Link]:
        return await store.links_across_teams(self._pool(), type_, external_user_id)

    def emitted_once(self, key: str) -> bool:
        return key in self._once

    # --- acting now ----------------------------------------------------------------------------------------

    async def publish_now(self, envelope: Envelope) -> None:
        await self._broker.publish(
            self._exchanges.incoming_for(envelope.type),
            envelope.routing_key,
            dumps_envelope(envelope),
            message_id=envelope.id,
            headers={KEY_HEADER: self.key_of(envelope)},
        )

    async def install(
        self, type_: str, *, team_id: str, user_id: str | None, config: dict[str, Any]
    ) -> IntegrationRecord:
        if self.installer is None:
            raise RuntimeError("this process cannot install integrations (the platform is not loaded)")
        return await self.installer(type_, team_id, user_id, config)

    def exclusive(self, key: str, writes: list[Write], *, wait: float) -> AbstractAsyncContextManager[None]:
        return leases.exclusive(self._pool(), writes, key, ttl=self._settings.lease_ttl, wait=wait)
