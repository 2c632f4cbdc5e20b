"""`ctx.db`: an integration's own tables, scoped to the message's team.

Every statement names the team as `$1` (the facade binds it): a handler cannot read or write
another team's rows by mistake. Writes are staged and run in the message's transaction, after
the handler returns. `lookup` is the read to use on a hot path: lookups made by the handlers
of one batch go to PostgreSQL together, as one query.

`ctx.unscoped_db` reads across teams; only schedules, services and webhook receivers, which
have no team, need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.sdk.backend import Backend, Lookup, Row
from worker.sdk.unit import Staged


class NoTeamError(RuntimeError):
    pass


class TeamDatabase:
    __slots__ = ("_backend", "_staged", "_team_id")

    def __init__(self, backend: Backend, team_id: str | None, staged: Staged | None) -> None:
        self._backend = backend
        self._team_id = team_id
        self._staged = staged

    @property
    def team_id(self) -> str:
        if self._team_id is None:
            raise NoTeamError("this context has no team: use ctx.unscoped_db to read across teams")
        return self._team_id

    def _args(self, sql: str, args: Sequence[Any]) -> tuple[Any, ...]:
        if "$1" not in sql:
            raise ValueError("team-scoped SQL must use $1, the team id")
        return (self.team_id, *args)

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        return await self._backend.fetch(sql, self._args(sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self._backend.fetch(sql, self._args(sql, args))
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        rows = await self._backend.fetch(sql, self._args(sql, args))
        return rows[0][0] if rows else None

    async def lookup(self, table: str, key: Mapping[str, Any], columns: Sequence[str]) -> Row | None:
        """The row of `table` (this team's) whose `key` columns equal these values, or None."""
        return await self._backend.lookup(Lookup(table, self.team_id, tuple(key.items()), tuple(columns)))

    def write(self, sql: str, *args: Any) -> None:
        """Stage a write; it runs after the handler returns, in the message's transaction."""
        if self._staged is None:
            raise RuntimeError("this context has no unit of work: nothing staged here would be committed")
        self._staged.writes.append((sql, self._args(sql, args)))


class UnscopedReads:
    """Reads across every team (schedules, services, webhook receivers)."""

    __slots__ = ("_backend",)

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        return await self._backend.fetch(sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self._backend.fetch(sql, args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        rows = await self._backend.fetch(sql, args)
        return rows[0][0] if rows else None
