"""The core-table SQL behind the platform's user-facing API (worker/platform/user_links.py): pages
of `integration_logs`, and the two staged writes of a user's link, its settings merged and the
row removed. The rest of the core tables' SQL is in store.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from schemas.rows import IntegrationLogRow, LogLevel
from worker.runtime.db import Queryable

LOG_COLUMNS = """id, key, integration_id, team_id, level::text AS level, message, integration_user_link_id,
    event_id, details, duration_ms, input_tokens, output_tokens, created_at"""

# Newest first, keyset-paged on (created_at, id): rows written meanwhile never shift a page. The
# integration must be the team's (checked here too, not only by the caller).
_LOG_PAGE = f"""
    SELECT {LOG_COLUMNS} FROM integration_logs
    WHERE integration_id = $1
      AND EXISTS (SELECT 1 FROM integrations i WHERE i.id = $1 AND i.team_id = $2)
      AND ($3::text[] IS NULL OR level::text = ANY($3::text[]))
      AND ($4::timestamptz IS NULL OR created_at >= $4)
      AND ($5::timestamptz IS NULL OR created_at < $5)
      AND ($6::text IS NULL OR key = $6)
      AND ($7::timestamptz IS NULL OR (created_at, id) < ($7, $8::text))
    ORDER BY created_at DESC, id DESC
    LIMIT $9"""  # noqa: S608 - a constant column list


async def log_page(
    conn: Queryable,
    integration_id: str,
    team_id: str,
    *,
    levels: Sequence[LogLevel] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    key: str | None = None,
    before: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[IntegrationLogRow]:
    """Up to `limit` log rows of the team's integration, newest first, older than `before`
    (the last row of the previous page: its created_at and id)."""
    records = await conn.fetch(
        _LOG_PAGE,
        integration_id,
        team_id,
        list(levels) if levels else None,
        since,
        until,
        key,
        before[0] if before is not None else None,
        before[1] if before is not None else None,
        limit,
    )
    return [IntegrationLogRow.model_validate(dict(r)) for r in records]


# Staged writes ($1 is the team, as everywhere): committed with the unit of work of the change.
MERGE_LINK_CONFIG = """
    UPDATE integration_user_link SET config = config || $3::jsonb, updated_at = now()
    WHERE team_id = $1 AND id = $2"""
DELETE_LINK = "DELETE FROM integration_user_link WHERE team_id = $1 AND id = $2"
