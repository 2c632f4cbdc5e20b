"""Running the service: the ingress, a worker, or both in one process, with one shutdown path."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Sequence

import asyncpg
import prometheus_client

from worker.consumer import Worker
from worker.errors import DB_UNAVAILABLE
from worker.integration import Registry
from worker.logging import get_logger
from worker.runtime import Runtime
from worker.schedules import ScheduleRunner
from worker.services import ServiceRunner
from worker.settings import Settings


async def serve(
    settings: Settings,
    registry: Registry,
    *,
    ingress: bool,
    worker: bool,
    types: Sequence[str] | None = None,
    concurrency: int | None = None,
) -> None:
    log = get_logger(component="process")
    runtime = Runtime(settings, registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not await _start_unless_stopped(runtime, stop):
        log.info("stopped before start-up finished")
        await runtime.stop()
        return
    app = None
    if ingress:
        # imported only here: the ingress (Starlette, uvicorn, the MCP server) would cost a
        # worker-only process half a second of start-up. Built before the freeze below, so a full
        # collection never walks it (a pause that showed in the ingress's p99).
        from worker.ingress import create_app, server  # noqa: PLC0415

        app = create_app(runtime)
    # Every message allocates many short-lived objects; with the default generation-0 threshold
    # (700) the cyclic collector runs thousands of times a second for nothing (refcounting frees
    # them). Freeze what start-up built and collect less often: ~10% less CPU per message.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    consumer: Worker | None = None
    services: ServiceRunner | None = None
    schedules: ScheduleRunner | None = None
    http_task: asyncio.Task[None] | None = None
    http_server = None
    try:
        if worker:
            consumer = Worker(runtime, types=types, concurrency=concurrency)
            await consumer.start()
            services = ServiceRunner(runtime, types=types)
            await services.start()
            schedules = ScheduleRunner(runtime, types=types)
            await schedules.start()
            if not ingress and settings.worker_metrics_port:
                prometheus_client.start_http_server(settings.worker_metrics_port)
        if app is not None:
            http_server = server(app, settings.http_host, settings.http_port)
            http_task = asyncio.create_task(http_server.serve())
            log.info("ingress listening", host=settings.http_host, port=settings.http_port)
        waiters = [asyncio.create_task(stop.wait())] + ([http_task] if http_task else [])
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down")
    finally:
        if http_server is not None and http_task is not None:
            http_server.should_exit = True  # stop accepting; requests in flight finish
            with contextlib.suppress(Exception):
                await http_task
        if services is not None:
            await services.stop()
        if schedules is not None:
            await schedules.stop()
        if consumer is not None:
            await consumer.stop()
        await runtime.stop()
        log.info("stopped")


async def _start_unless_stopped(runtime: Runtime, stop: asyncio.Event) -> bool:
    """Start, waiting for PostgreSQL and RabbitMQ to come up; False when SIGTERM came first."""
    starting = asyncio.create_task(_start_with_retry(runtime))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return False
    starting.result()  # a start-up error that waiting does not cure ends the process, with its reason
    return True


# PostgreSQL not reachable yet, or up but still starting (CannotConnectNowError), or full.
_NOT_READY: tuple[type[Exception], ...] = (
    *DB_UNAVAILABLE,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


async def _start_with_retry(runtime: Runtime) -> None:
    log = get_logger(component="process")
    delay = 0.5
    while True:
        try:
            await runtime.start()
            return
        except _NOT_READY as exc:
            log.warning("database not ready, retrying", error=type(exc).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(10.0, delay * 2)
