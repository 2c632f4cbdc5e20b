"""A process of the service: start the runtime (waiting for PostgreSQL and RabbitMQ), run its
roles, stop them all on SIGTERM through one shutdown path.

The HTTP roles (webhook ingress, platform API: worker/cli/serve.py) are handed in as a starter,
so a worker-only process never loads the web stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvloop
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from worker import platform
from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.core.settings import ConfigurationError, Settings
from worker.runtime.failures import DB_NOT_READY, DB_REFUSED
from worker.runtime.health import HealthServer
from worker.runtime.runtime import Runtime
from worker.runtime.schedules import ScheduleRunner
from worker.runtime.services import ServiceRunner
from worker.runtime.worker import Worker
from worker.sdk.registry import Registry

EXIT_CONFIGURATION = 2  # settings that cannot work: refused credentials, an insecure address, a bad value
EXIT_CANNOT_LISTEN = 3  # the HTTP port is taken or the address is not this machine's


class CannotListen(Exception):
    """The HTTP server could not bind its address."""


# Starts the HTTP server of a process on the runtime; returns its task and how to stop it.
HttpStarter = Callable[[Runtime], Awaitable[tuple["asyncio.Task[Any]", Callable[[], Awaitable[None]]]]]


async def run_process(
    settings: Settings,
    registry: Registry,
    *,
    worker: bool,
    http: HttpStarter | None = None,
    types: Sequence[str] | None = None,
    concurrency: int | None = None,
) -> None:
    """Raises ConfigurationError (nothing started) when the settings cannot work: a development
    key on a public address, credentials the broker or the database refuses."""
    log = get_logger(component="process")
    host = None
    if http is not None or (worker and settings.worker_metrics_port):
        host = settings.listen_host()  # InsecureConfiguration before anything starts
        if settings.development_keys:
            log.warning(
                "development keys in use: listening on loopback only; set your own to serve other addresses",
                keys=settings.development_keys,
                host=host,
            )
    runtime = platform.attach(Runtime(settings, registry))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not await _start_unless_stopped(runtime, stop):
        log.info("stopped before start-up finished")
        await runtime.stop()
        return
    # Every message allocates many short-lived objects; with the default generation-0 threshold
    # (700) the cyclic collector runs thousands of times a second for nothing (refcounting frees
    # them). Freeze what start-up built and collect less often: ~10% less CPU per message.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(_stopped, runtime, log)
        if worker and http is None and settings.worker_metrics_port:  # up first: a probe sees the start-up
            server = HealthServer(runtime, host or "127.0.0.1", settings.worker_metrics_port)
            try:
                await server.start()
            except OSError as exc:
                raise CannotListen(f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}") from None
            stack.push_async_callback(server.stop)
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
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
        if http is not None:
            serving, stop_serving = await http(runtime)
            waiters.append(serving)
            stack.push_async_callback(stop_serving)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down")


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
            try:
                await runtime.start()
            except DB_REFUSED as exc:
                raise ConfigurationError(f"PostgreSQL refused IW_DATABASE_URL: {redact(str(exc))}") from None


def types_option(value: str | None) -> list[str] | None:
    return [t.strip() for t in value.split(",") if t.strip()] if value else None


def roles(*, worker: bool, http: HttpStarter | None) -> Callable[[argparse.Namespace, Settings, Registry], int]:
    """The command of a process with these roles."""

    def command(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
        async def go() -> int:
            try:
                await run_process(
                    settings,
                    registry,
                    worker=worker,
                    http=http,
                    types=types_option(getattr(args, "types", None)),
                    concurrency=getattr(args, "concurrency", None),
                )
            except ConfigurationError as exc:
                get_logger(component="process").error("cannot start", error=str(exc))
                print(f"integration-worker: cannot start: {exc}", file=sys.stderr)
                return EXIT_CONFIGURATION
            except CannotListen as exc:
                get_logger(component="process").error("cannot listen", error=str(exc))
                print(f"integration-worker: {exc}", file=sys.stderr)
                return EXIT_CANNOT_LISTEN
            return 0

        return int(uvloop.run(go()))

    return command


worker_command = roles(worker=True, http=None)
