"""What the runtime provides to integration code, as protocols: the SDK describes it, the
runtime implements it (worker/runtime/backend.py), and a context hands it to integrations through
typed, scoped facades (`ctx.db`, `ctx.integrations`, `ctx.links`, `ctx.tokens`). Nothing here is
a database driver's or a broker client's type."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from schemas.envelope import Envelope
from worker.core.cache import TTLCache
from worker.core.settings import Settings
from worker.sdk.records import IntegrationRecord, Link
from worker.sdk.tokens import TokenService
from worker.sdk.unit import Write


class Row(Protocol):
    """A database row: by column name or position."""

    def __getitem__(self, key: str | int, /) -> Any: ...

    def get(self, key: str, default: Any = None, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...

    def values(self) -> Iterable[Any]: ...

    def items(self) -> Iterable[tuple[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class Lookup:
    """One keyed read of an integration's own table (`ctx.db.lookup`): the row of `table` whose
    `team_id` and key columns equal these values, with `columns`. Lookups of the same shape made
    while a batch runs go to PostgreSQL as one query."""

    table: str
    team_id: str
    key: tuple[tuple[str, Any], ...]
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Exchanges:
    incoming: str
    results: str
    shards: Mapping[str, str] = field(default_factory=dict)  # per type: its shard exchange

    def incoming_for(self, type_: str) -> str:
        """Where a message of `type_` is published: straight to its type's shard exchange (the hop
        through the incoming topic exchange costs the broker ~40 us a message), or the incoming
        exchange for a type this process does not know."""
        return self.shards.get(type_, self.incoming)


class Backend(Protocol):
    """The runtime, as integration code reaches it."""

    def key_of(self, envelope: Envelope) -> str:
        """The ordering key of a message to publish (the `iw-key` header): what its handler declares."""
        ...

    @property
    def settings(self) -> Settings: ...

    @property
    def http(self) -> httpx.AsyncClient: ...

    @property
    def exchanges(self) -> Exchanges: ...

    @property
    def tokens(self) -> TokenService: ...

    def integration_settings(self, type_: str) -> BaseSettings | None: ...

    def cache(self, type_: str) -> TTLCache: ...

    # the integration's own tables
    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Row]: ...

    async def lookup(self, lookup: Lookup) -> Row | None: ...

    # the core tables, typed
    async def integration(self, integration_id: str, *, fresh: bool = False) -> IntegrationRecord | None: ...

    async def integrations(
        self, type_: str, *, team_id: str | None = None, active_only: bool = False
    ) -> list[IntegrationRecord]: ...

    async def save_config(self, record: IntegrationRecord, config: BaseModel) -> IntegrationRecord: ...

    def status_write(self, record: IntegrationRecord, status: str) -> Write: ...

    async def links(
        self,
        integration_id: str,
        team_id: str,
        *,
        link_id: str | None = None,
        user_ids: Sequence[str] | None = None,
        external_user_ids: Sequence[str] | None = None,
        active_only: bool = False,
    ) -> list[Link]: ...

    async def links_across_teams(self, type_: str, *, external_user_id: str | None = None) -> list[Link]: ...

    def emitted_once(self, key: str) -> bool:
        """True when an event with this `once` key is known to be published already."""
        ...

    # acting now
    async def publish_now(self, envelope: Envelope) -> None: ...

    async def install(
        self, type_: str, *, team_id: str, user_id: str | None, config: dict[str, Any]
    ) -> IntegrationRecord: ...

    def exclusive(self, key: str, writes: list[Write], *, wait: float) -> AbstractAsyncContextManager[None]: ...
