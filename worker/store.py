"""The runtime's SQL: integrations, the inbox, the outbox, log rows and staged writes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import Any

import asyncpg

from schemas.rows import IntegrationRow
from worker.context import LogEntry, OutboxItem
from worker.db import Conn, Queryable

INTEGRATION_COLUMNS = "id, team_id, external_team_id, name, type, config, status, created_at, updated_at"


_ALIASED_COLUMNS = ", ".join(f"i.{column}" for column in INTEGRATION_COLUMNS.split(", "))
_INTEGRATIONS_FOR = f"""
    SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE id = ANY($1::text[])
    UNION ALL
    SELECT {_ALIASED_COLUMNS} FROM integrations i
      JOIN unnest($2::text[], $3::text[]) AS k(type, ext) ON i.type = k.type AND i.external_team_id = k.ext
    UNION ALL
    SELECT {_ALIASED_COLUMNS} FROM integrations i
      JOIN unnest($4::text[], $5::text[]) AS k(type, team) ON i.type = k.type AND i.team_id = k.team"""  # noqa: S608


def integration_row(record: asyncpg.Record) -> IntegrationRow:
    return IntegrationRow.model_validate(dict(record))


async def integrations_for(
    conn: Queryable,
    ids: Sequence[str],
    external: Sequence[tuple[str, str]],
    by_team: Sequence[tuple[str, str]],
) -> list[IntegrationRow]:
    """Integrations by id, by (type, external team id) and by (type, team id), in one round trip.
    A group of messages names the same integration many times: each key is asked, and each row
    read, once."""
    ids = list(dict.fromkeys(ids))
    external = list(dict.fromkeys(external))
    by_team = list(dict.fromkeys(by_team))
    records = await conn.fetch(
        _INTEGRATIONS_FOR,
        ids,
        [t for t, _ in external],
        [e for _, e in external],
        [t for t, _ in by_team],
        [team for _, team in by_team],
    )
    seen: dict[str, IntegrationRow] = {}
    for record in records:
        if record["id"] not in seen:
            seen[record["id"]] = integration_row(record)
    return list(seen.values())


async def processed(conn: Queryable, ids: Sequence[str]) -> set[str]:
    if not ids:
        return set()
    records = await conn.fetch("SELECT id FROM processed_events WHERE id = ANY($1::text[])", list(ids))
    return {r["id"] for r in records}


async def mark_processed(conn: Conn, ids: Sequence[str], types: Sequence[str]) -> set[str]:
    """Insert ids into the inbox; returns those that were new (not processed by someone else)."""
    if not ids:
        return set()
    records = await conn.fetch(
        """INSERT INTO processed_events (id, type) SELECT * FROM unnest($1::text[], $2::text[])
           ON CONFLICT (id) DO NOTHING RETURNING id""",
        list(ids),
        list(types),
    )
    return {r["id"] for r in records}


async def run_writes(conn: Conn, writes: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
    """Run staged writes in order; consecutive writes of the same statement go as one executemany."""
    for sql, group in groupby(writes, key=lambda w: w[0]):
        rows = [args for _, args in group]
        if len(rows) == 1:
            await conn.execute(sql, *rows[0])
        else:
            await conn.executemany(sql, rows)


async def insert_outbox(conn: Conn, items: Sequence[OutboxItem]) -> set[str]:
    """Write items to the outbox; returns the ids written. An item with a `once_key` is written
    only if it claims its key now (first in this batch, and never claimed before)."""
    if not items:
        return set()
    records = await conn.fetch(
        """WITH items AS (
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[])
                   WITH ORDINALITY AS i(id, exchange, routing_key, body, correlation_id, once_key, ord)),
           claimed AS (
               INSERT INTO emitted_once (key) SELECT DISTINCT once_key FROM items WHERE once_key IS NOT NULL
               ON CONFLICT (key) DO NOTHING RETURNING key),
           chosen AS (
               SELECT DISTINCT ON (coalesce(once_key, id)) * FROM items
               WHERE once_key IS NULL OR once_key IN (SELECT key FROM claimed)
               ORDER BY coalesce(once_key, id), ord)
           INSERT INTO outbox (id, exchange, routing_key, body, correlation_id)
           SELECT id, exchange, routing_key, body, correlation_id FROM chosen
           ON CONFLICT (id) DO NOTHING RETURNING id""",
        [i.id for i in items],
        [i.exchange for i in items],
        [i.routing_key for i in items],
        [i.body for i in items],
        [i.correlation_id for i in items],
        [i.once_key for i in items],
    )
    return {r["id"] for r in records}


async def delete_outbox(conn: Queryable, ids: Sequence[str]) -> None:
    if ids:
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::text[])", list(ids))


async def insert_logs(conn: Conn, entries: Sequence[LogEntry]) -> None:
    if not entries:
        return
    await conn.executemany(
        """INSERT INTO integration_logs
             (integration_id, team_id, level, key, message, event_id, details, integration_user_link_id, duration_ms)
           SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
           WHERE EXISTS (SELECT 1 FROM integrations WHERE id = $1)""",
        [
            (
                e.integration_id,
                e.team_id,
                e.level,
                e.key,
                e.message,
                e.event_id,
                e.details,
                e.user_link_id,
                e.duration_ms,
            )
            for e in entries
        ],
    )


async def due_outbox(conn: Conn, older_than_seconds: float, limit: int) -> list[asyncpg.Record]:
    records: list[asyncpg.Record] = await conn.fetch(
        """SELECT id, exchange, routing_key, body, correlation_id FROM outbox
           WHERE created_at < now() - make_interval(secs => $1)
           ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        older_than_seconds,
        limit,
    )
    return records


async def prune_inbox(conn: Queryable, retention_days: float) -> int:
    """Forget processed ids, and the answers of action calls, older than the retention."""
    await conn.execute(
        "DELETE FROM action_results WHERE created_at < now() - make_interval(secs => $1)", retention_days * 86400
    )
    status: str = await conn.execute(
        "DELETE FROM processed_events WHERE processed_at < now() - make_interval(secs => $1)",
        retention_days * 86400,
    )
    return int(status.rsplit(maxsplit=1)[-1])
