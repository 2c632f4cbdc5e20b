"""Health of a process, the same answer for every role:

    GET /healthz   the process is up (200)
    GET /readyz    200 when the broker takes publishes, PostgreSQL answers, and (a worker) every
                   shard it owns is consumed; else 503, saying which check failed
    GET /metrics   Prometheus

The ingress and the platform API serve these on their HTTP port; a worker process alone serves
them on IW_WORKER_METRICS_PORT with `HealthServer`, a few lines over asyncio's streams (a worker
never loads the web stack).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson

from worker.core.logging import get_logger
from worker.runtime import metrics
from worker.runtime.runtime import Runtime


async def database_ready(runtime: Runtime) -> bool:
    try:
        async with asyncio.timeout(2):
            return bool(await runtime.pool.fetchval("SELECT 1") == 1)
    except Exception:
        return False


async def readiness(runtime: Runtime) -> tuple[bool, dict[str, Any]]:
    """(ready, what each check found)."""
    broker = runtime.broker
    checks: dict[str, Any] = {
        "broker": broker.connected and not broker.blocked,
        "database": await database_ready(runtime),
    }
    ready = all(checks.values())
    if runtime.consuming is not None:
        types = runtime.consuming()
        if types is None:  # a worker of this process has not started consuming yet
            checks["types"] = "starting"
            return False, checks
        checks["types"] = types
        ready = ready and all(each["consuming"] == each["owned"] for each in types.values())
    return ready, checks


async def probe(runtime: Runtime, path: str) -> tuple[int, bytes, str]:
    """The answer to a health path: status, body, content type."""
    if path == "/healthz":
        return 200, b'{"status":"ok"}', "application/json"
    if path == "/metrics":
        body, content_type = metrics.render()
        return 200, body, content_type
    ready, checks = await readiness(runtime)
    body = orjson.dumps({"status": "ready" if ready else "not ready", **checks})
    return 200 if ready else 503, body, "application/json"


HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class HealthServer:
    """/healthz, /readyz and /metrics of a worker process: GET only, one request a connection."""

    def __init__(self, runtime: Runtime, host: str, port: int) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self.log = get_logger(component="health")

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.log.info("health and metrics", host=self.host, port=self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readline()
                while (await reader.readline()).strip():  # the headers: not needed
                    pass
                method, _, rest = request.decode("latin-1").partition(" ")
                path = rest.split(" ", 1)[0].split("?", 1)[0]
                if method != "GET" or path not in HEALTH_PATHS:
                    status, body, content_type = 404, b'{"error":"not found"}', "application/json"
                else:
                    status, body, content_type = await probe(self.runtime, path)
                reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
                head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                writer.write(head.encode() + body)
                await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
