"""Periodic jobs (`Schedule`), each run by exactly one worker at a time across all processes.

Every schedule is a row in `schedules` (`<type>.<name>`, `next_run_at`). Each worker process
polls; a due row is taken with `FOR UPDATE SKIP LOCKED`, the job runs while the row is
locked, and `next_run_at` moves `every_seconds` ahead in the same transaction. Another worker
skips the locked row, and after the commit sees it is not due. A worker that dies mid-job
rolls back, so another takes the job at its next poll. A failed job is tried again after
`retry_seconds` (at most `every_seconds`).

Jobs should be short: they publish commands (`ctx.publish(...)`) for the real work, so each
unit gets the worker's retries, logs and deduplication. A new schedule is due at once, so
a first deployment runs it right away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from worker.integration import Schedule
from worker.logging import get_logger
from worker.redact import redact
from worker.runtime import Runtime


@dataclass(frozen=True)
class _Entry:
    type: str
    schedule: Schedule

    @property
    def name(self) -> str:
        return f"{self.type}.{self.schedule.name}"


class ScheduleRunner:
    def __init__(
        self,
        runtime: Runtime,
        *,
        types: Sequence[str] | None = None,
        poll_interval: float = 15.0,
        retry_seconds: float = 60.0,
        job_timeout: float = 300.0,
    ) -> None:
        self.runtime = runtime
        wanted = set(types) if types else None
        self._entries = [
            _Entry(integration.type, schedule)
            for integration in runtime.registry
            if wanted is None or integration.type in wanted
            for schedule in integration.schedules
        ]
        self.poll_interval = poll_interval
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
        ran = []
        for entry in self._entries:
            if await self._run_if_due(entry):
                ran.append(entry.name)
        return ran

    async def _run_if_due(self, entry: _Entry) -> bool:
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            due = await conn.fetchval(
                "SELECT 1 FROM schedules WHERE name = $1 AND next_run_at <= now() FOR UPDATE SKIP LOCKED",
                entry.name,
            )
            if not due:
                return False
            ctx = self.runtime.background_context(entry.type, None)
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
            await conn.execute(
                """UPDATE schedules SET next_run_at = now() + make_interval(secs => every_seconds),
                       last_run_at = now(), last_error = NULL, runs = runs + 1
                   WHERE name = $1""",
                entry.name,
            )
            self.log.info("scheduled job ran", schedule=entry.name)
            return True

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try at the next poll
                self.log.warning("schedule poll failed", error=redact(str(exc)))
            await asyncio.sleep(self.poll_interval)
