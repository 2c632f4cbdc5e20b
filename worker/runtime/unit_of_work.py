"""The one commit path: a batch of messages in the worker, an install, an OAuth callback, a
scheduled job's run all end here.

In one transaction:

    inbox      the ids of the messages that ran (a message whose id another worker committed
               meanwhile is a duplicate: none of its writes are applied)
    writes     the staged writes, in each unit's order; the same statement of several units runs
               as one `executemany`
    outbox     result events, commands for later and replies (an item with a `once` key only if
               the key was never claimed)
    logs       `integration_logs` rows, in one statement

then the outbox items written are published (worker/runtime/outbox.py). When the database
refuses a write (a constraint, a bad value), the batch is applied again one unit per savepoint,
and the refused units fail alone, permanently.

Every transaction writes in one order whatever its units are: the inbox by id, the writes level
by level (each unit's k-th write), within a level by statement then by the rows' values, the
`once` keys and outbox rows by key. Two transactions that touch the same rows take their locks
in the same order, so they wait for each other instead of deadlocking. A deadlock or a
serialization failure that still happens is contention, not an outage: the transaction is tried
again in place (CONTENTION_TRIES times, with jitter, counted in `iw_commit_retries_total`), and
never sends a message to the retry queue.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby
from typing import Any

import asyncpg
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from worker.core.text import without_nul
from worker.runtime import metrics, store
from worker.runtime.db import Conn
from worker.runtime.failures import classify
from worker.runtime.outbox import Outbox
from worker.sdk.errors import Failure, PermanentError
from worker.sdk.unit import OutboxItem, Staged, Write


class OnceKeys:
    """`once` keys this process saw committed: claimed for good (the `emitted_once` table keeps
    them), so staging their event again would only make the database refuse it. Remembering
    them spares that work: a pull request pushed ten times emits its status change once, and
    nine of ten `emit(..., once=)` calls are skipped here instead of written and refused.
    (Worst-case benchmark, 50,000 events: 45,000 outbox rows not written.)"""

    def __init__(self, size: int = 100_000) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._keys[key] = None
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)


@dataclass(slots=True)
class Unit:
    """One unit's work: what it staged, and the message id (and type) it marks processed."""

    staged: Staged
    inbox_id: str | None = None
    inbox_type: str = ""


@dataclass(slots=True)
class Committed:
    raced: set[int] = field(default_factory=set)  # units whose id was committed by another worker
    refused: dict[int, Failure] = field(default_factory=dict)  # units the database refused
    outbox: list[OutboxItem] = field(default_factory=list)  # written: to publish


async def apply(conn: Conn, units: Sequence[Unit], indexes: Sequence[int] | None = None) -> Committed:
    """Write the units inside the caller's transaction (see the module's docstring)."""
    indexes = indexes if indexes is not None else range(len(units))
    committed = Committed()
    marked = [i for i in indexes if units[i].inbox_id is not None]
    if marked:
        fresh = await store.mark_processed(
            conn, [units[i].inbox_id or "" for i in marked], [units[i].inbox_type for i in marked]
        )
        committed.raced = {i for i in marked if units[i].inbox_id not in fresh}
    applied = [units[i].staged for i in indexes if i not in committed.raced]
    await run_writes(conn, [staged.writes for staged in applied])
    outbox = once_each([item for staged in applied for item in staged.outbox])
    written = await store.insert_outbox(conn, outbox)
    committed.outbox = [item for item in outbox if item.id in written]
    await store.insert_logs(conn, [entry for staged in applied for entry in staged.logs])
    return committed


class UnrenderableEvent(PermanentError):
    """An event staged with `once=` (rendered only when kept) that cannot be serialised: its unit
    fails alone, as a write the database refuses does."""


def once_each(items: Sequence[OutboxItem]) -> list[OutboxItem]:
    """The items in order, an item whose `once` key an earlier one has dropped, each rendered."""
    seen: set[str] = set()
    kept = []
    for item in items:
        if item.once_key is not None:
            if item.once_key in seen:
                continue
            seen.add(item.once_key)
        try:
            kept.append(item.rendered())
        except (TypeError, ValueError) as exc:  # orjson's JSONEncodeError, pydantic's serialisation errors
            raise UnrenderableEvent(f"event {item.routing_key} cannot be serialised: {exc}") from exc
    return kept


# Contention, not an outage: tried again in place.
CONTENTION: tuple[type[Exception], ...] = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
CONTENTION_TRIES = 6


def _row_order(args: tuple[Any, ...]) -> bytes:
    """A row's place among the rows of its statement: the same in every process (its values)."""
    try:
        return orjson.dumps(args, default=repr)
    except TypeError:  # a value orjson cannot walk: its text
        return repr(args).encode()


async def run_writes(conn: Conn, sequences: Sequence[Sequence[Write]]) -> None:
    """Each unit's writes in its order. Level k holds every unit's k-th write; within a level the
    same statement runs once, as `executemany` (units of one batch ran side by side, so their
    writes have no order among each other), statements and rows in one order (by text, by value)."""
    depth = max((len(writes) for writes in sequences), default=0)
    for level in range(depth):
        writes = sorted((writes[level] for writes in sequences if len(writes) > level), key=lambda write: write[0])
        for sql, group in groupby(writes, key=lambda write: write[0]):
            rows = [args for _, args in group]
            if len(rows) == 1:
                await conn.execute(sql, *rows[0])
            else:
                rows.sort(key=_row_order)
                await conn.executemany(sql, rows)


# What PostgreSQL answers to a NUL character: in a text column, in a jsonb value.
_NUL_REFUSED = (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)


def _without_nul(unit: Unit) -> Unit:
    staged = unit.staged
    logs = [
        replace(entry, message=without_nul(entry.message), details=without_nul(entry.details)) for entry in staged.logs
    ]
    writes = [(sql, without_nul(args)) for sql, args in staged.writes]
    return Unit(Staged(writes=writes, outbox=staged.outbox, logs=logs), unit.inbox_id, unit.inbox_type)


class UnitOfWork:
    def __init__(self, pool: Callable[[], asyncpg.Pool], outbox: Outbox) -> None:
        self._pool = pool
        self.outbox = outbox
        self.once = OnceKeys()

    async def commit(self, units: Sequence[Unit]) -> Committed:
        """Commit the units; a database refusal fails only the units it concerns. Raises when the
        database is unavailable (nothing committed), or CONTENTION when it stayed contended after
        CONTENTION_TRIES tries. Publishes what the outbox gained."""
        published = self.outbox.take_published()
        try:
            async for attempt in contended():
                with attempt:
                    committed = await self._commit_once(units, published)
        except BaseException:
            self.outbox.untake(published)
            raise
        self.once.add(
            item.once_key
            for i, unit in enumerate(units)
            if i not in committed.raced and i not in committed.refused
            for item in unit.staged.outbox
            if item.once_key is not None
        )
        self.outbox.publish_soon(committed.outbox)
        return committed

    async def _commit_once(self, units: Sequence[Unit], published: Sequence[str]) -> Committed:
        async with self._pool().acquire() as conn:
            try:
                async with conn.transaction():
                    await store.delete_outbox(conn, published)
                    return await apply(conn, units)
            except (asyncpg.PostgresError, UnrenderableEvent) as exc:
                if classify(exc).kind == "transient":
                    raise
                await store.delete_outbox(conn, published)
                return await self._one_by_one(conn, units)

    async def _one_by_one(self, conn: Conn, units: Sequence[Unit]) -> Committed:
        total = Committed()
        async with conn.transaction():
            for index in range(len(units)):
                try:
                    one = await self._apply_one(conn, units, index)
                except (asyncpg.PostgresError, UnrenderableEvent) as exc:
                    failure = classify(exc)
                    if failure.kind == "transient":
                        raise
                    total.refused[index] = failure
                    continue
                total.raced |= one.raced
                total.outbox += one.outbox
        return total

    @staticmethod
    async def _apply_one(conn: Conn, units: Sequence[Unit], index: int) -> Committed:
        try:
            async with conn.transaction():
                return await apply(conn, units, [index])
        except _NUL_REFUSED:  # text from a provider holding NUL: stored without it, not refused
            async with conn.transaction():
                return await apply(conn, [_without_nul(units[index])], [0])

    async def commit_staged(self, staged: Staged) -> None:
        """One unit with no inbox id (an install, an OAuth callback), in a transaction of its
        own; its outbox is published once committed. (A caller with a transaction of its own
        calls `apply` in it, then publishes `Committed.outbox` after its commit.)"""
        async for attempt in contended():
            with attempt:
                async with self._pool().acquire() as conn, conn.transaction():
                    committed = await apply(conn, [Unit(staged)])
        await self.outbox.publish(committed.outbox)


def contended() -> AsyncRetrying:
    """Tries of one transaction while it deadlocks or fails to serialise (a few ms apart, jittered);
    the last failure is raised as it is."""
    return AsyncRetrying(
        retry=retry_if_exception_type(CONTENTION),
        stop=stop_after_attempt(CONTENTION_TRIES),
        wait=wait_random_exponential(multiplier=0.005, max=0.2),
        before_sleep=_count_contention,
        reraise=True,
    )


def _count_contention(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    reason = "deadlock" if isinstance(error, asyncpg.DeadlockDetectedError) else "serialization"
    metrics.child(metrics.COMMIT_RETRIES, reason).inc()
