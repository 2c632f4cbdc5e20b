"""The HTTP roles of a process: the webhook ingress, the platform API, or both on one port.

run       webhook ingress + platform API (one port) + worker
ingress   the webhook ingress alone (IW_HTTP_PORT)
api       the platform API alone (IW_HTTP_PORT)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from worker.cli.process import CannotListen, roles
from worker.core.logging import get_logger
from worker.core.settings import Settings
from worker.platform.app import PlatformApp
from worker.runtime.ingress import Ingress
from worker.runtime.runtime import Runtime
from worker.sdk.registry import Registry


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling (the process's shutdown path owns SIGTERM), which
    says when its start-up is over (`started` tells whether it succeeded)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_over = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.startup_over.set()

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port already taken is a clear error (uvicorn
    would log it and exit from inside the event loop)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


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
        log_config=None,  # uvicorn's records go through the root handler, redacted (worker/core/logging.py)
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


def starter(
    *, ingress: bool, api: bool
) -> Callable[[Runtime], Awaitable[tuple[asyncio.Task[Any], Callable[[], Awaitable[None]]]]]:
    async def start(runtime: Runtime) -> tuple[asyncio.Task[Any], Callable[[], Awaitable[None]]]:
        settings = runtime.settings
        host = settings.listen_host()
        sock = bind(host, settings.http_port)
        server = http_server(create_app(runtime, ingress=ingress, api=api), host, settings.http_port)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        over = asyncio.create_task(server.startup_over.wait())
        await asyncio.wait({over, serving}, return_when=asyncio.FIRST_COMPLETED)
        over.cancel()
        if not server.started:  # the app's start-up failed (its lifespan said why)
            sock.close()
            serving.result()
            raise CannotListen(f"the HTTP server on {host}:{settings.http_port} did not start")
        get_logger(component="process").info("listening", host=host, port=settings.http_port, ingress=ingress, api=api)

        async def stop() -> None:
            server.should_exit = True  # stop accepting; requests in flight finish
            with contextlib.suppress(Exception):
                await serving

        return serving, stop

    return start


run_command = roles(worker=True, http=starter(ingress=True, api=True))
_ingress_only = roles(worker=False, http=starter(ingress=True, api=False))
_ingress_and_api = roles(worker=False, http=starter(ingress=True, api=True))


def ingress_command(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
    return (_ingress_and_api if args.with_api else _ingress_only)(args, settings, registry)


api_command = roles(worker=False, http=starter(ingress=False, api=True))
