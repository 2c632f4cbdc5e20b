"""PostgreSQL: the asyncpg pool (jsonb as Python values, the configured schema on the path)."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from worker.core.settings import Settings

Pool = asyncpg.Pool
Connection = asyncpg.Connection
# What `pool.acquire()` hands out, or a plain connection.
Conn = asyncpg.Connection | PoolConnectionProxy
# Anything that runs a query: a connection, or the pool itself.
Queryable = asyncpg.Connection | PoolConnectionProxy | asyncpg.Pool


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


class PooledConnection(asyncpg.Connection):
    """A pool connection released without asyncpg's reset query (`RESET ALL; UNLISTEN *; CLOSE ALL;
    SELECT pg_advisory_unlock_all()`), one round trip per release. asyncpg still ends any open
    transaction on release; the runtime sets no session state, and code that takes session
    advisory locks uses a connection of its own, not the pool."""

    def get_reset_query(self) -> str:
        return ""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )


async def create_pool(settings: Settings, *, reads: bool = False) -> Pool:
    """The runtime's pool: writes (the unit of work) and the integrations' own reads. Statements
    are prepared once per connection and planned generically after a few runs: a staged write
    that runs 256 times a batch is planned once, not 256 times (measured, 50,000 events:
    PostgreSQL 2.75 s of CPU with every execution planned, 1.55 s without).

    `reads=True`: the pool of the batch look-ups (the inbox check with the integrations of a
    batch, coalesced lookups), whose tables grow fast. A generic plan made while a table was
    small keeps scanning it whole long after (measured before: 631 sequential scans of
    processed_events in a 40,000-event run), so these are planned at every execution with the
    table's current size; there are two per batch, so planning costs nothing that shows.

    Each pool opens one connection at start and the others as the work needs them (up to its
    size): a fleet of processes, CLI commands included, does not take PostgreSQL's connections
    it does not use."""
    server_settings = {
        "search_path": f"{settings.database_schema},public",
        "application_name": f"integration-worker/{settings.broker_prefix}"[:63],
    }
    if reads:
        server_settings["plan_cache_mode"] = "force_custom_plan"
    size = max(2, settings.database_pool_size // 2) if reads else settings.database_pool_size
    pool: Pool = await asyncpg.create_pool(
        settings.database_url.get_secret_value(),
        min_size=1,  # the rest opened when needed: a CLI command or an idle process holds one each
        max_size=size,
        init=_init_connection,
        connection_class=PooledConnection,
        server_settings=server_settings,
        command_timeout=60,
    )
    return pool
