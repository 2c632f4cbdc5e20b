"""The runtime's SQL on the core tables: integrations, users' links, the inbox, the outbox and log
rows. Integrations reach these tables only through the SDK's typed facades."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from pydantic import ValidationError

from schemas.rows import IntegrationRow
from worker.core.logging import get_logger
from worker.runtime.db import Conn, Queryable
from worker.sdk.errors import validation_summary
from worker.sdk.records import Link
from worker.sdk.unit import LogEntry, OutboxItem

_log = get_logger(component="store")

INTEGRATION_COLUMNS = "id, team_id, external_team_id, name, type, config, status, created_at, updated_at"
_ALIASED = ", ".join(f"i.{column}" for column in INTEGRATION_COLUMNS.split(", "))


_INTEGRATIONS_FOR = f"""
    SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE id = ANY($1::text[])
    UNION ALL
    SELECT {_ALIASED} FROM integrations i
      JOIN unnest($2::text[], $3::text[]) AS k(type, ext) ON i.type = k.type AND i.external_team_id = k.ext
    UNION ALL
    SELECT {_ALIASED} FROM integrations i
      JOIN unnest($4::text[], $5::text[]) AS k(type, team) ON i.type = k.type AND i.team_id = k.team"""  # noqa: S608
_INTEGRATIONS_OF_TYPE = f"""
    SELECT {INTEGRATION_COLUMNS} FROM integrations
    WHERE type = $1 AND ($2::text IS NULL OR team_id = $2) AND (NOT $3 OR status = 'active')
    ORDER BY team_id, created_at, id"""  # noqa: S608
_TEAM_INTEGRATIONS = f"""
    SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE team_id = $1 ORDER BY type, created_at, id"""  # noqa: S608


# The inbox check and the integrations of a batch in one round trip: the first row carries the ids
# already processed (its integration columns are null), the others are integrations.
_BATCH = f"""
    SELECT array(SELECT p.id FROM processed_events p WHERE p.id = ANY($6::text[])) AS processed,
           NULL::text AS id, NULL::text AS team_id, NULL::text AS external_team_id, NULL::text AS name,
           NULL::text AS type, NULL::jsonb AS config, NULL::text AS status, NULL::timestamptz AS created_at,
           NULL::timestamptz AS updated_at
    UNION ALL
    SELECT NULL::text[], u.* FROM ({_INTEGRATIONS_FOR}) u"""  # noqa: S608


async def batch_look_up(
    conn: Queryable,
    ids: Sequence[str],
    integration_ids: Sequence[str],
    external: Sequence[tuple[str, str]],
    by_team: Sequence[tuple[str, str]],
) -> tuple[set[str], list[IntegrationRow]]:
    """The ids of `ids` already processed, and the integrations by id, by (type, external team
    id) and by (type, team id): one statement, one round trip."""
    integration_ids = list(dict.fromkeys(integration_ids))
    external = list(dict.fromkeys(external))
    by_team = list(dict.fromkeys(by_team))
    records = await conn.fetch(
        _BATCH,
        integration_ids,
        [t for t, _ in external],
        [e for _, e in external],
        [t for t, _ in by_team],
        [team for _, team in by_team],
        list(ids),
    )
    processed: set[str] = set()
    seen: dict[str, IntegrationRow] = {}
    for record in records:
        if record["id"] is None:
            processed.update(record["processed"] or ())
        elif record["id"] not in seen:
            try:
                seen[record["id"]] = integration_row(record)
            except ValidationError as exc:  # its messages are parked as naming no integration
                _log.error("integration row unreadable", integration_id=record["id"], error=validation_summary(exc))
    return processed, list(seen.values())


def integration_row(record: asyncpg.Record) -> IntegrationRow:
    return IntegrationRow.model_validate(dict(record))


async def integrations_for(
    conn: Queryable,
    ids: Sequence[str],
    external: Sequence[tuple[str, str]],
    by_team: Sequence[tuple[str, str]],
) -> list[IntegrationRow]:
    """Integrations by id, by (type, external team id) and by (type, team id), in one round trip.
    A batch names the same integration many times: each key is asked, and each row read, once."""
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


async def integrations_of_type(
    conn: Queryable, type_: str, *, team_id: str | None, active_only: bool
) -> list[IntegrationRow]:
    return [integration_row(r) for r in await conn.fetch(_INTEGRATIONS_OF_TYPE, type_, team_id, active_only)]


async def team_integrations(conn: Queryable, team_id: str) -> list[IntegrationRow]:
    return [integration_row(r) for r in await conn.fetch(_TEAM_INTEGRATIONS, team_id)]


async def save_config(conn: Queryable, integration_id: str, team_id: str, sealed: dict[str, Any]) -> IntegrationRow:
    record = await conn.fetchrow(
        f"""UPDATE integrations SET config = $3, updated_at = now() WHERE team_id = $1 AND id = $2
            RETURNING {INTEGRATION_COLUMNS}""",  # noqa: S608
        team_id,
        integration_id,
        sealed,
    )
    if record is None:
        raise LookupError(f"integration {integration_id} is no longer installed")
    return integration_row(record)


STATUS_WRITE = "UPDATE integrations SET status = $3, updated_at = now() WHERE team_id = $1 AND id = $2"

# --- users' links --------------------------------------------------------------------------------------

_LINK_COLUMNS = """l.id, l.team_id, l.integration_id, l.integration_type, l.user_id, l.external_user_id,
    l.external_user_name, l.status, l.config, l.refresh_token IS NOT NULL AS has_refresh_token,
    l.token_expires_at, l.created_at, l.updated_at"""
_LINKS = f"""
    SELECT {_LINK_COLUMNS} FROM integration_user_link l
    WHERE l.team_id = $1 AND l.integration_id = $2
      AND ($3::text IS NULL OR l.id = $3)
      AND ($4::text[] IS NULL OR l.user_id = ANY($4::text[]))
      AND ($5::text[] IS NULL OR l.external_user_id = ANY($5::text[]))
      AND (NOT $6 OR l.status = 'active')
    ORDER BY l.updated_at DESC, l.id"""  # noqa: S608
_LINKS_ACROSS_TEAMS = f"""
    SELECT {_LINK_COLUMNS} FROM integration_user_link l
      JOIN integrations i ON i.id = l.integration_id AND i.status = 'active'
    WHERE l.integration_type = $1 AND i.type = $1 AND l.status = 'active'
      AND ($2::text IS NULL OR l.external_user_id = $2)
    ORDER BY l.team_id, l.integration_id, l.id"""  # noqa: S608


def link_of(record: asyncpg.Record) -> Link:
    return Link(
        id=record["id"],
        team_id=record["team_id"],
        integration_id=record["integration_id"],
        type=record["integration_type"],
        user_id=record["user_id"],
        external_user_id=record["external_user_id"],
        external_user_name=record["external_user_name"],
        status=record["status"],
        config=record["config"] or {},
        has_refresh_token=record["has_refresh_token"],
        token_expires_at=record["token_expires_at"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )


async def links(
    conn: Queryable,
    integration_id: str,
    team_id: str,
    *,
    link_id: str | None = None,
    user_ids: Sequence[str] | None = None,
    external_user_ids: Sequence[str] | None = None,
    active_only: bool = False,
) -> list[Link]:
    records = await conn.fetch(
        _LINKS,
        team_id,
        integration_id,
        link_id,
        list(user_ids) if user_ids is not None else None,
        list(external_user_ids) if external_user_ids is not None else None,
        active_only,
    )
    return [link_of(r) for r in records]


async def links_across_teams(conn: Queryable, type_: str, external_user_id: str | None) -> list[Link]:
    return [link_of(r) for r in await conn.fetch(_LINKS_ACROSS_TEAMS, type_, external_user_id)]


# --- the inbox ----------------------------------------------------------------------------------------


async def mark_processed(conn: Conn, ids: Sequence[str], types: Sequence[str]) -> set[str]:
    """Insert ids into the inbox; returns those that were new (not processed by someone else)."""
    if not ids:
        return set()
    # in one order (by id) in every transaction: two that insert some ids alike cannot deadlock
    pairs = sorted(zip(ids, types, strict=True))
    records = await conn.fetch(
        """INSERT INTO processed_events (id, type) SELECT * FROM unnest($1::text[], $2::text[])
           ON CONFLICT (id) DO NOTHING RETURNING id""",
        [i for i, _ in pairs],
        [t for _, t in pairs],
    )
    return {r["id"] for r in records}


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


async def prune_expired_flows(conn: Queryable) -> None:
    """Forget OAuth flows and used account-link tokens once they have expired."""
    await conn.execute("DELETE FROM oauth_flows WHERE expires_at < now()")
    await conn.execute("DELETE FROM used_link_tokens WHERE expires_at < now()")


# --- the outbox and log rows --------------------------------------------------------------------------


async def insert_outbox(conn: Conn, items: Sequence[OutboxItem]) -> set[str]:
    """Write items to the outbox; returns the ids written. An item with a `once_key` is written
    only if it claims its key now (first in this batch, and never claimed before)."""
    if not items:
        return set()
    records = await conn.fetch(
        """WITH items AS (
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[],
                                    $7::jsonb[])
                   WITH ORDINALITY AS i(id, exchange, routing_key, body, correlation_id, once_key, headers, ord)),
           claimed AS (
               INSERT INTO emitted_once (key)
               SELECT DISTINCT once_key FROM items WHERE once_key IS NOT NULL ORDER BY once_key
               ON CONFLICT (key) DO NOTHING RETURNING key),
           chosen AS (
               SELECT DISTINCT ON (coalesce(once_key, id)) * FROM items
               WHERE once_key IS NULL OR once_key IN (SELECT key FROM claimed)
               ORDER BY coalesce(once_key, id), ord)
           INSERT INTO outbox (id, exchange, routing_key, body, correlation_id, headers)
           SELECT id, exchange, routing_key, body, correlation_id, headers FROM chosen ORDER BY id
           ON CONFLICT (id) DO NOTHING RETURNING id""",
        [i.id for i in items],
        [i.exchange for i in items],
        [i.routing_key for i in items],
        [i.body for i in items],
        [i.correlation_id for i in items],
        [i.once_key for i in items],
        [i.headers for i in items],
    )
    return {r["id"] for r in records}


async def delete_outbox(conn: Queryable, ids: Sequence[str]) -> None:
    if ids:
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::text[])", list(ids))


async def due_outbox(conn: Conn, older_than_seconds: float, limit: int) -> list[OutboxItem]:
    records = await conn.fetch(
        """SELECT id, exchange, routing_key, body, correlation_id, headers FROM outbox
           WHERE created_at < now() - make_interval(secs => $1)
           ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        older_than_seconds,
        limit,
    )
    return [
        OutboxItem(
            r["id"], r["exchange"], r["routing_key"], bytes(r["body"]), r["correlation_id"], headers=r["headers"]
        )
        for r in records
    ]


async def insert_logs(conn: Conn, entries: Sequence[LogEntry]) -> None:
    """Log rows, in one statement; rows of an integration uninstalled meanwhile are dropped."""
    if not entries:
        return
    await conn.execute(
        """INSERT INTO integration_logs
             (integration_id, team_id, level, key, message, event_id, details, integration_user_link_id, duration_ms)
           SELECT r.* FROM unnest($1::text[], $2::text[], $3::integration_logs_level[], $4::text[], $5::text[],
                                  $6::text[], $7::jsonb[], $8::text[], $9::int[])
                AS r(integration_id, team_id, level, key, message, event_id, details, link_id, duration_ms)
           WHERE EXISTS (SELECT 1 FROM integrations i WHERE i.id = r.integration_id)""",
        [e.integration_id for e in entries],
        [e.team_id for e in entries],
        [e.level for e in entries],
        [e.key for e in entries],
        [e.message for e in entries],
        [e.event_id for e in entries],
        [e.details for e in entries],
        [e.user_link_id for e in entries],
        [e.duration_ms for e in entries],
    )
