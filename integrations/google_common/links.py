"""Users' links (`integration_user_link`) of a Google integration, read within the team."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from worker.context import Context
from worker.errors import PermanentError

USER_HEADER = "x-user-id"
_COLUMNS = "id, user_id, external_user_id, status, config, created_at"


@dataclass(frozen=True)
class Link:
    id: str
    user_id: str
    email: str  # the Google account (external_user_id)
    status: str
    config: dict[str, Any]

    @property
    def active(self) -> bool:
        return self.status == "active"


def _link(record: asyncpg.Record) -> Link:
    return Link(record["id"], record["user_id"], record["external_user_id"], record["status"], record["config"] or {})


async def link_by_id(ctx: Context, link_id: str) -> Link | None:
    record = await ctx.db.fetchrow(
        f"SELECT {_COLUMNS} FROM integration_user_link WHERE team_id = $1 AND integration_id = $2 AND id = $3",  # noqa: S608
        ctx.integration_id,
        link_id,
    )
    return _link(record) if record is not None else None


async def links_of(ctx: Context, *, user_ids: list[str] | None = None, active_only: bool = True) -> list[Link]:
    records = await ctx.db.fetch(
        f"""SELECT {_COLUMNS} FROM integration_user_link
            WHERE team_id = $1 AND integration_id = $2 AND ($3::text[] IS NULL OR user_id = ANY($3::text[]))
              AND (NOT $4 OR status = 'active')
            ORDER BY user_id, updated_at DESC""",  # noqa: S608
        ctx.integration_id,
        user_ids,
        active_only,
    )
    return [_link(r) for r in records]


async def acting_link(ctx: Context) -> Link:
    """The link of the user an action acts for: the platform user id in the envelope header
    `x-user-id` (the agent's user, as MIMRAI's behalfUserId); their newest link of this integration."""
    user_id = ctx.envelope.headers.get(USER_HEADER)
    if not user_id:
        raise PermanentError(f"this action acts as a user: set the envelope header {USER_HEADER!r}")
    links = await links_of(ctx, user_ids=[user_id], active_only=False)
    if not links:
        raise PermanentError(f"user {user_id} has not connected a Google account to this integration")
    active = [link for link in links if link.active]
    if not active:
        raise PermanentError(f"user {user_id} must connect their Google account again")
    return active[0]
