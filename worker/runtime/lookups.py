"""`ctx.db.lookup`: keyed reads of integrations' own tables, coalesced.

The handlers of a batch run side by side and each reads a row or two; one round trip each
would cost more than their work. Lookups of the same shape (table, key columns and their
types, columns read) made in the same event-loop turn go to PostgreSQL as one statement,
built from the shape (identifiers checked, never taken from data):

    SELECT t."updated_at", k.i AS __lookup_index
    FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS k(team_id, integration_id, external_id, i)
    JOIN "github_pull_requests" t ON t.team_id = k.team_id AND t."integration_id" = k.integration_id AND ...

The team is always part of the key: a lookup sees its own team's rows only.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

import asyncpg

from worker.sdk.backend import Lookup, Row

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "bigint"),
    (float, "double precision"),
    (Decimal, "numeric"),
    (str, "text"),
    (datetime, "timestamptz"),
    (date, "date"),
    (uuid.UUID, "uuid"),
)
INDEX_COLUMN = "__lookup_index"

Shape = tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]


def _pg_type(value: Any) -> str:
    for python, pg in _TYPES:
        if isinstance(value, python):
            return pg
    if value is None:
        return "text"
    raise TypeError(f"a lookup key cannot be a {type(value).__name__}")


def _identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain lowercase identifier: {name!r}")
    return f'"{name}"'


def build(shape: Shape) -> str:
    table, keys, types, columns = shape
    arrays = ", ".join(f"${n}::{pg}[]" for n, pg in enumerate(("text", *types), start=1))
    names = ", ".join(("team_id", *(f"k{n}" for n in range(len(keys))), "i"))
    selected = ", ".join(f"t.{_identifier(c)}" for c in columns) or "1"
    joins = " AND ".join(["t.team_id = k.team_id", *(f"t.{_identifier(key)} = k.k{n}" for n, key in enumerate(keys))])
    return (
        f"SELECT {selected}, k.i AS {INDEX_COLUMN} FROM unnest({arrays}) WITH ORDINALITY AS k({names}) "  # noqa: S608
        f"JOIN {_identifier(table)} t ON {joins}"
    )


class Lookups:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._pending: dict[Shape, list[tuple[Lookup, asyncio.Future[Row | None]]]] = {}
        self._statements: dict[Shape, str] = {}
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def lookup(self, lookup: Lookup) -> Row | None:
        keys = tuple(name for name, _ in lookup.key)
        shape = (lookup.table, keys, tuple(_pg_type(value) for _, value in lookup.key), lookup.columns)
        if shape not in self._statements:
            self._statements[shape] = build(shape)  # checks the identifiers before anything is queued
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Row | None] = loop.create_future()
        self._pending.setdefault(shape, []).append((lookup, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        loop = asyncio.get_running_loop()
        for shape, items in pending.items():
            task = loop.create_task(self._run(shape, items))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, shape: Shape, items: list[tuple[Lookup, asyncio.Future[Row | None]]]) -> None:
        arrays: list[list[Any]] = [[lookup.team_id for lookup, _ in items]]
        for position in range(len(shape[1])):
            arrays.append([lookup.key[position][1] for lookup, _ in items])
        try:
            records = await self._pool.fetch(self._statements[shape], *arrays)
        except BaseException as exc:
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        found: dict[int, Row] = {}
        for record in records:
            found.setdefault(record[INDEX_COLUMN], cast(Row, record))
        for index, (_, future) in enumerate(items, start=1):
            if not future.done():
                future.set_result(found.get(index))
