"""Periodic jobs (`Schedule`), each run by exactly one worker at a time across all processes: the
integrations' (renew Gmail watches) and the runtime's own maintenance (inbox pruning, the outbox
relay), as data.

Every schedule is a row in `schedules` (`<type>.<name>`, `next_run_at`). Each worker process
polls; a due row is taken with `FOR UPDATE SKIP LOCKED`, the job runs while the row is locked,
and in the same transaction `next_run_at` moves `every_seconds` ahead and the job's unit of work
(the commands it staged with `ctx.publish`) is committed. Another worker skips the locked row,
and after the commit sees it is not due. A worker that dies mid-job rolls back: nothing it
staged goes out, and another takes the job at its next poll. A failed job is tried again after
`retry_seconds` (at most `every_seconds`). A new schedule is due at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.envelope import Envelope
from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.runtime import store
from worker.runtime.runtime import Runtime
from worker.runtime.unit_of_work import Unit, apply
from worker.sdk.context import Context
from worker.sdk.declare import Schedule
from worker.sdk.unit import Staged

RUNTIME_TYPE = "worker"  # the type under which the runtime's own jobs are listed


@dataclass(frozen=True)
class Entry:
    type: str
    schedule: Schedule

    @property
    def name(self) -> str:
        return f"{self.type}.{self.schedule.name}"


def maintenance(runtime: Runtime) -> list[Schedule]:
    """The runtime's own periodic work."""
    settings = runtime.settings

    async def prune_inbox(ctx: Context) -> None:
        removed = await store.prune_inbox(runtime.pool, settings.inbox_retention_days)
        ctx.log.info("inbox pruned", removed=removed)

    async def prune_expired_flows(_ctx: Context) -> None:
        await store.prune_expired_flows(runtime.pool)

    async def relay_outbox(_ctx: Context) -> None:
        await runtime.outbox.relay(older_than=settings.outbox_relay_interval * 6)

    return [
        Schedule("prune_inbox", 3600.0, prune_inbox),
        Schedule("prune_expired_flows", 3600.0, prune_expired_flows),
        Schedule("relay_outbox", settings.outbox_relay_interval, relay_outbox),
    ]


class ScheduleRunner:
    def __init__(
        self,
        runtime: Runtime,
        *,
        types: Sequence[str] | None = None,
        poll_interval: float = 15.0,
        retry_seconds: float = 60.0,
        job_timeout: float = 300.0,
        with_maintenance: bool = True,
    ) -> None:
        self.runtime = runtime
        wanted = set(types) if types else None
        self._entries = [
            Entry(integration.type, schedule)
            for integration in runtime.registry
            if wanted is None or integration.type in wanted
            for schedule in integration.schedules
        ]
        if with_maintenance:
            self._entries += [Entry(RUNTIME_TYPE, schedule) for schedule in maintenance(runtime)]
        self.poll_interval = min([poll_interval, *(e.schedule.every_seconds for e in self._entries)])
        self.retry_seconds = retry_seconds
        self.job_timeout = job_timeout
        self._task: asyncio.Task[None] | None = None
        self._registered = False
        self.log = get_logger(component="schedules")

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self._entries]

    async def start(self) -> None:
        if not self._entries:
            return
        await self.register()
        self._task = asyncio.create_task(self._loop(), name="iw-schedules")
        self.log.info("schedules running", schedules=self.names, poll_interval=self.poll_interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def register(self) -> None:
        """Create the rows of schedules seen for the first time (due now); keep the others' times."""
        await self.runtime.pool.executemany(
            """INSERT INTO schedules (name, every_seconds, next_run_at) VALUES ($1, $2, now())
               ON CONFLICT (name) DO UPDATE SET every_seconds = EXCLUDED.every_seconds""",
            [(entry.name, entry.schedule.every_seconds) for entry in self._entries],
        )
        self._registered = True

    async def run_due(self) -> list[str]:
        """One pass: run every due schedule nobody else is running; returns the names run."""
        if not self._registered:
            await self.register()
        due = {
            r["name"]
            for r in await self.runtime.pool.fetch(
                "SELECT name FROM schedules WHERE next_run_at <= now() AND name = ANY($1::text[])", self.names
            )
        }
        return [entry.name for entry in self._entries if entry.name in due and await self._run_if_due(entry)]

    async def _run_if_due(self, entry: Entry) -> bool:
        runtime = self.runtime
        async with runtime.pool.acquire() as conn, conn.transaction():
            started = await conn.fetchval(
                "SELECT now() FROM schedules WHERE name = $1 AND next_run_at <= now() FOR UPDATE SKIP LOCKED",
                entry.name,
            )
            if started is None:
                return False
            staged = Staged()
            ctx = self._context(entry, staged, started)
            try:
                async with asyncio.timeout(self.job_timeout):
                    await entry.schedule.run(ctx)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = redact(f"{type(exc).__name__}: {exc}")[:2000]
                self.log.warning("scheduled job failed; trying again later", schedule=entry.name, error=reason)
                await conn.execute(
                    """UPDATE schedules SET next_run_at = now() + make_interval(secs => $2), last_error = $3
                       WHERE name = $1""",
                    entry.name,
                    min(self.retry_seconds, entry.schedule.every_seconds),
                    reason,
                )
                return True
            committed = await apply(conn, [Unit(staged)])
            await conn.execute(
                """UPDATE schedules SET next_run_at = now() + make_interval(secs => every_seconds),
                       last_run_at = now(), last_error = NULL, runs = runs + 1
                   WHERE name = $1""",
                entry.name,
            )
        await runtime.outbox.publish(committed.outbox)
        self.log.debug("scheduled job ran", schedule=entry.name)
        return True

    def _context(self, entry: Entry, staged: Staged, started: datetime) -> Context:
        run = Envelope(
            id=f"schedule:{entry.name}:{started.astimezone(UTC).isoformat()}",
            type=entry.type,
            kind="command",
            name=entry.schedule.name,
        )
        return Context(self.runtime.backend, entry.type, envelope=run, staged=staged)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try at the next poll
                self.log.warning("schedule poll failed", error=redact(str(exc)))
            await asyncio.sleep(self.poll_interval)
