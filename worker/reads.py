"""Coalesced reads: handlers running side by side each read a row or two; issued one by one,
every read is a round trip (a syscall each way, expensive on small VMs). Reads of the same
statement issued in the same event-loop turn go to PostgreSQL together, as one pipelined
round trip (asyncpg's `fetchmany`), and each caller gets its own rows back.

The statement is wrapped as `SELECT q.*, $n AS __iw_index FROM (<statement>) AS q`, so a
coalesced row carries one extra trailing column; positional and named access to the
statement's own columns is unchanged. Statements that are not plain SELECT/WITH queries run
as they are.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import asyncpg

from worker.errors import DB_ERRORS

INDEX_COLUMN = "__iw_index"
_RUN_APART: tuple[type[Exception], ...] = (*DB_ERRORS, ValueError, TypeError)
_PARAM = re.compile(r"\$(\d+)")
_READ = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)
_LOCKING = re.compile(r"\bfor\s+(update|share|no\s+key|key)\b", re.IGNORECASE)


def _coalescable(sql: str) -> bool:
    return bool(_READ.match(sql)) and not _LOCKING.search(sql) and ";" not in sql.strip().rstrip(";")


class ReadBatcher:
    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 500) -> None:
        self._pool = pool
        self._max = max_batch
        self._pending: dict[str, list[tuple[Sequence[Any], asyncio.Future[list[asyncpg.Record]]]]] = {}
        self._scheduled = False
        self._wrapped: dict[str, str] = {}

    async def fetch(self, sql: str, args: Sequence[Any]) -> list[asyncpg.Record]:
        if not _coalescable(sql):
            records: list[asyncpg.Record] = await self._pool.fetch(sql, *args)
            return records
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[asyncpg.Record]] = loop.create_future()
        self._pending.setdefault(sql, []).append((args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for sql, items in pending.items():
            for start in range(0, len(items), self._max):
                asyncio.get_running_loop().create_task(self._run(sql, items[start : start + self._max]))

    def _wrap(self, sql: str) -> str:
        wrapped = self._wrapped.get(sql)
        if wrapped is None:
            index = max((int(n) for n in _PARAM.findall(sql)), default=0) + 1
            wrapped = f"SELECT q.*, ${index}::int AS {INDEX_COLUMN} FROM ({sql}) AS q"  # noqa: S608 - code's SQL
            self._wrapped[sql] = wrapped
        return wrapped

    async def _run(self, sql: str, items: list[tuple[Sequence[Any], asyncio.Future[list[asyncpg.Record]]]]) -> None:
        if len(items) == 1:
            await self._one(sql, *items[0])
            return
        try:
            async with self._pool.acquire() as conn:
                rows = await conn.fetchmany(self._wrap(sql), [(*args, i) for i, (args, _) in enumerate(items)])
        except _RUN_APART:
            # One bad argument fails the whole pipeline: run them apart so each caller gets its own answer.
            await asyncio.gather(*(self._one(sql, args, future) for args, future in items))
            return
        except BaseException as exc:
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            raise
        grouped: list[list[asyncpg.Record]] = [[] for _ in items]
        for row in rows:
            grouped[row[INDEX_COLUMN]].append(row)
        for (_, future), found in zip(items, grouped, strict=True):
            if not future.done():
                future.set_result(found)

    async def _one(self, sql: str, args: Sequence[Any], future: asyncio.Future[list[asyncpg.Record]]) -> None:
        try:
            records = await self._pool.fetch(sql, *args)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if not future.done():
            future.set_result(records)
