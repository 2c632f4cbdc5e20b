"""Services: long-running tasks per active integration (a Mattermost WebSocket listener), run by
exactly one worker process at a time across all processes and machines.

Each worker process keeps one dedicated PostgreSQL connection for leases (not a pool connection:
session locks must not leak into other work). Every IW_SERVICE_POLL_INTERVAL seconds it lists
the active integrations of its types that declare services and tries `pg_try_advisory_lock` for
each service it does not run yet; the key is a 64-bit hash of (schema, type, service,
integration id). A session advisory lock lives as long as the session that took it, so:

- one holder at a time: the lock is the lease;
- the holder dies: PostgreSQL ends its session and frees its locks (at once for a killed process;
  within about 11 s for a machine that vanished, through the TCP keepalives set on the lease
  connection), and another worker takes over at its next poll;
- the lease connection breaks or stops answering: this process can no longer know it holds its
  locks, so it stops all its services at once, then reconnects and competes again;
- an integration uninstalled or no longer active: its service stops and the lock is released;
  reconfigured (`updated_at` moved): restarted with the new config.

A service that returns or fails while its lease is held is restarted with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.runtime import store
from worker.runtime.runtime import Runtime
from worker.sdk.declare import Service
from worker.sdk.records import IntegrationRecord

_ACTIVE = f"SELECT {store.INTEGRATION_COLUMNS} FROM integrations WHERE type = ANY($1::text[]) AND status = 'active'"  # noqa: S608 - a constant column list
_RESTART_MAX = 60.0


def lock_key(schema: str, type_: str, service: str, integration_id: str) -> int:
    """The advisory-lock key of one service of one integration (signed 64-bit)."""
    digest = hashlib.blake2b(
        "\x1f".join(("iw-service", schema, type_, service, integration_id)).encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass
class _Running:
    lock: int
    updated_at: datetime
    task: asyncio.Task[None]


class LeaseLost(Exception):
    pass


class ServiceEnded(Exception):
    """A service's `run` returned or failed: it is started again, with backoff."""


class ServiceRunner:
    def __init__(
        self,
        runtime: Runtime,
        *,
        types: Sequence[str] | None = None,
        poll_interval: float | None = None,
        query_timeout: float = 5.0,
    ) -> None:
        self.runtime = runtime
        wanted = set(types) if types else None
        self._services: dict[str, tuple[Service, ...]] = {
            integration.type: tuple(integration.services)
            for integration in runtime.registry
            if integration.services and (wanted is None or integration.type in wanted)
        }
        self.poll_interval = poll_interval if poll_interval is not None else runtime.settings.service_poll_interval
        self.query_timeout = query_timeout
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._running: dict[tuple[str, str], _Running] = {}
        self._task: asyncio.Task[None] | None = None
        self.log = get_logger(component="services")

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._services:
            return
        self._task = asyncio.create_task(self._loop(), name="iw-services")
        self.log.info("services runner started", types=sorted(self._services), poll_interval=self.poll_interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stop_all(unlock=False)
        await self._drop_connection()  # ends the session: every lock is released

    def running(self) -> list[tuple[str, str]]:
        """(integration id, service name) of the services this process runs now."""
        return sorted(self._running)

    # --- the loop ------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        """Rounds until cancelled; a lost lease connection stops every service, then the runner
        connects and competes again (0.5 s doubling to 10 s)."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(LeaseLost),
            wait=wait_exponential_jitter(multiplier=0.5, max=10.0, jitter=0.2),
            before_sleep=self._leases_lost,
        ):
            with attempt:
                await self._rounds()

    async def _leases_lost(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.log.warning("service leases lost; stopping every service", error=redact(str(error)))
        await self._stop_all(unlock=False)
        await self._drop_connection()

    async def _rounds(self) -> None:
        while True:
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._connect()
                await self._query("SELECT 1")  # the lease connection answers: our locks are ours
                await self._reconcile(await self._wanted())
            except LeaseLost:
                raise
            except Exception as exc:  # listing integrations failed (pool): keep what runs, try again
                self.log.warning("services round failed", error=redact(f"{type(exc).__name__}: {exc}"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self.poll_interval)
            if self._lost.is_set():
                raise LeaseLost("the lease connection closed")

    async def _connect(self) -> None:
        settings = self.runtime.settings
        try:
            self._conn = await asyncpg.connect(
                settings.database_url.get_secret_value(),
                timeout=10,
                server_settings={
                    "application_name": f"integration-worker/services/{os.getpid()}"[:63],
                    # A vanished machine's session (and its locks) ends in about 5 + 2 * 3 seconds.
                    "tcp_keepalives_idle": "5",
                    "tcp_keepalives_interval": "2",
                    "tcp_keepalives_count": "3",
                },
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise LeaseLost(f"cannot open the lease connection: {type(exc).__name__}") from None
        self._lost.clear()
        self._conn.add_termination_listener(self._on_terminated)

    def _on_terminated(self, _conn: Any) -> None:
        self._lost.set()

    async def _query(self, sql: str, *args: Any) -> Any:
        conn = self._conn
        if conn is None or conn.is_closed():
            raise LeaseLost("no lease connection")
        try:
            return await asyncio.wait_for(conn.fetchval(sql, *args), self.query_timeout)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise LeaseLost(f"lease connection failed: {type(exc).__name__}") from None

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._on_terminated)
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:
                conn.terminate()

    # --- what runs -------------------------------------------------------------------------------------

    async def _wanted(self) -> dict[tuple[str, str], tuple[IntegrationRecord, Service]]:
        rows = await self.runtime.pool.fetch(_ACTIVE, list(self._services))
        wanted: dict[tuple[str, str], tuple[IntegrationRecord, Service]] = {}
        for row in rows:
            try:
                record = self.runtime.record(store.integration_row(row))
            except Exception as exc:  # an undecryptable or invalid config: nothing to run
                self.log.warning("integration skipped", integration_id=row["id"], error=redact(str(exc)))
                continue
            for service in self._services.get(record.type, ()):
                wanted[(record.id, service.name)] = (record, service)
        return wanted

    async def _reconcile(self, wanted: dict[tuple[str, str], tuple[IntegrationRecord, Service]]) -> None:
        for key, running in list(self._running.items()):
            target = wanted.get(key)
            if target is None or target[0].row.updated_at != running.updated_at:
                reason = "integration gone or inactive" if target is None else "integration reconfigured"
                await self._stop(key, unlock=True, reason=reason)
        schema = self.runtime.settings.database_schema
        for key, (record, service) in wanted.items():
            if key in self._running:
                continue
            lock = lock_key(schema, record.type, service.name, record.id)
            if not await self._query("SELECT pg_try_advisory_lock($1)", lock):
                continue  # another worker runs it
            task = asyncio.create_task(self._supervise(record, service), name=f"iw-service-{service.name}-{record.id}")
            self._running[key] = _Running(lock, record.row.updated_at, task)
            self.log.info("service started", type=record.type, service=service.name, integration_id=record.id)

    async def _stop(self, key: tuple[str, str], *, unlock: bool, reason: str) -> None:
        running = self._running.pop(key, None)
        if running is None:
            return
        running.task.cancel()
        await asyncio.wait({running.task}, timeout=10)  # stopped before the lease can move on
        if unlock:
            with contextlib.suppress(LeaseLost):
                await self._query("SELECT pg_advisory_unlock($1)", running.lock)
        self.log.info("service stopped", integration_id=key[0], service=key[1], reason=reason)

    async def _stop_all(self, *, unlock: bool) -> None:
        for key in list(self._running):
            await self._stop(key, unlock=unlock, reason="stopping all services")

    async def _supervise(self, record: IntegrationRecord, service: Service) -> None:
        """Run the service for as long as the lease is held; when it returns or fails, start it
        again after 1 s doubling to a minute (back to 1 s once it had run for a minute)."""
        ctx = self.runtime.receiver_context(record.type, record)
        loop = asyncio.get_running_loop()
        started = loop.time()

        def backoff(state: RetryCallState) -> float:
            if loop.time() - started > _RESTART_MAX:  # it had been running well: start over
                state.attempt_number = 1
            return float(wait_exponential_jitter(multiplier=1.0, max=_RESTART_MAX, jitter=0.2)(state))

        async for attempt in AsyncRetrying(retry=retry_if_exception_type(ServiceEnded), wait=backoff):
            with attempt:
                started = loop.time()
                try:
                    await service.run(ctx)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.log.warning(
                        "service failed; restarting",
                        service=service.name,
                        integration_id=record.id,
                        error=redact(f"{type(exc).__name__}: {exc}"),
                    )
                    raise ServiceEnded(service.name) from None
                self.log.warning("service returned; restarting", service=service.name, integration_id=record.id)
                raise ServiceEnded(service.name)
