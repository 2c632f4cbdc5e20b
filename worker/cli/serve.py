"""Running the service: the ingress, the platform's API, a worker, or all in one process, with
one shutdown path.

    run       webhook ingress + platform API (one port) + worker
    ingress   the webhook ingress alone (IW_HTTP_PORT)
    api       the platform API alone (IW_HTTP_PORT)
    worker    a worker alone (metrics on IW_WORKER_METRICS_PORT)

Every role starts by waiting for PostgreSQL and RabbitMQ (tenacity: 0.5 s doubling to 10 s);
SIGTERM during that wait, or later, stops it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Sequence
from typing import Any

import prometheus_client
import uvicorn
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from worker import platform
from worker.core.logging import get_logger
from worker.core.settings import Settings
from worker.platform.app import PlatformApp
from worker.runtime.failures import DB_NOT_READY
from worker.runtime.ingress import Ingress
from worker.runtime.runtime import Runtime
from worker.runtime.schedules import ScheduleRunner
from worker.runtime.services import ServiceRunner
from worker.runtime.worker import Worker
from worker.sdk.registry import Registry


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process's shutdown path owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


def http_server(app: Any, host: str, port: int) -> QuietServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        loop="none",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
        backlog=2048,
        proxy_headers=False,  # the public URL comes from IW_PUBLIC_URL, never from request headers
    )
    return QuietServer(config)


def create_app(runtime: Runtime, *, ingress: bool = True, api: bool = True) -> Any:
    """The HTTP app of a process: the webhook ingress, the platform API, or both on one port (the
    ingress hands every path it does not serve to the API). Its lifespan runs what the API needs
    while it serves (the MCP session manager, the tool gateway's reply queue)."""
    api_app = PlatformApp(runtime) if api else None
    if not ingress:
        return api_app
    return Ingress(runtime, fallback=api_app, lifespan=api_app.running if api_app is not None else None)


async def serve(
    settings: Settings,
    registry: Registry,
    *,
    ingress: bool,
    api: bool,
    worker: bool,
    types: Sequence[str] | None = None,
    concurrency: int | None = None,
) -> None:
    log = get_logger(component="process")
    runtime = platform.attach(Runtime(settings, registry))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not await _start_unless_stopped(runtime, stop):
        log.info("stopped before start-up finished")
        await runtime.stop()
        return
    app = create_app(runtime, ingress=ingress, api=api) if ingress or api else None
    # Every message allocates many short-lived objects; with the default generation-0 threshold
    # (700) the cyclic collector runs thousands of times a second for nothing (refcounting frees
    # them). Freeze what start-up built and collect less often: ~10% less CPU per message.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(_stopped, runtime, log)
        if worker:
            consumer = Worker(runtime, types=types, concurrency=concurrency)
            await consumer.start()
            stack.push_async_callback(consumer.stop)
            schedules = ScheduleRunner(runtime, types=types)
            await schedules.start()
            stack.push_async_callback(schedules.stop)
            services = ServiceRunner(runtime, types=types)
            await services.start()
            stack.push_async_callback(services.stop)
            if app is None and settings.worker_metrics_port:
                prometheus_client.start_http_server(settings.worker_metrics_port)
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
        if app is not None:
            server = http_server(app, settings.http_host, settings.http_port)
            waiters.append(asyncio.create_task(server.serve()))
            stack.push_async_callback(_stop_server, server, waiters[-1])
            log.info("listening", host=settings.http_host, port=settings.http_port, ingress=ingress, api=api)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down")


async def _stop_server(server: QuietServer, task: asyncio.Task[Any]) -> None:
    server.should_exit = True  # stop accepting; requests in flight finish
    with contextlib.suppress(Exception):
        await task


async def _stopped(runtime: Runtime, log: Any) -> None:
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


async def _start_with_retry(runtime: Runtime) -> None:
    log = get_logger(component="process")

    def waiting(state: Any) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("database not ready, retrying", error=type(error).__name__, retry_in=round(state.upcoming_sleep, 2))

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(DB_NOT_READY),
        wait=wait_exponential_jitter(multiplier=0.5, max=10.0, jitter=0.1),
        before_sleep=waiting,
    ):
        with attempt:
            await runtime.start()
