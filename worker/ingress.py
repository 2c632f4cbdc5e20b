"""The ingress: verify provider webhooks, publish them (confirmed), answer.

POST /webhooks/{type}[/{integration_id}]   202 once the broker confirmed; 401 bad signature,
                                           400 malformed, 404 unknown type, 413 too large,
                                           503 broker unavailable (the provider retries)
GET  /healthz                              the process is up
GET  /readyz                               broker and database reachable
GET  /metrics                              Prometheus
GET  /oauth/{type}/start, /callback        see worker/oauth.py
POST /links                                confirm an account-link token (worker/links.py)
GET  /attachments/{token}                  a file that came with a message (worker/attachments.py)
/integrations...                           the install lifecycle and catalog (worker/admin_api.py)
/tools...                                  agent tools over HTTP (worker/tools_api.py)
/mcp                                       agent tools as an MCP server (worker/mcp_server.py)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from schemas.envelope import InvalidEnvelope, encode_webhook
from worker.admin_api import admin_routes
from worker.attachments import attachment_routes
from worker.broker import BrokerUnavailable
from worker.http_answers import error, json_response
from worker.integration import Accept, Reply, WebhookRejected, WebhookRequest
from worker.links import link_routes
from worker.logging import get_logger
from worker.mcp_server import McpEndpoint
from worker.metrics import INGRESS_SECONDS, PUBLISHED, WEBHOOKS_RECEIVED, render
from worker.oauth import oauth_routes
from worker.redact import redact
from worker.runtime import Runtime
from worker.tools import ToolGateway
from worker.tools_api import tool_routes


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class Ingress:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.public_url = runtime.settings.public_url.rstrip("/")
        self.log = get_logger(component="ingress")
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        child = self._children.get((metric._name, *labels))
        if child is None:
            child = self._children[(metric._name, *labels)] = metric.labels(*labels)
        return child

    def _published(self, type_: str) -> Any:
        return self._child(PUBLISHED, type_)

    async def webhook(self, request: Request) -> Response:
        started = time.perf_counter()
        type_ = request.path_params["type"]
        integration = self.runtime.registry.get(type_)
        if integration is None or integration.webhook is None:
            WEBHOOKS_RECEIVED.labels("unknown", "404").inc()
            return error(404, f"unknown integration type {type_!r}")
        response = await self._webhook(request, type_)
        self._child(WEBHOOKS_RECEIVED, type_, str(response.status_code)).inc()
        self._child(INGRESS_SECONDS, type_).observe(time.perf_counter() - started)
        return response

    async def _webhook(self, request: Request, type_: str) -> Response:
        integration = self.runtime.registry.get(type_)
        assert integration is not None and integration.webhook is not None
        limit = self.settings.body_limit(type_, integration.max_body_bytes)
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            return error(413, f"body larger than {limit} bytes")
        query = request.url.query
        webhook_request = WebhookRequest(
            type=type_,
            method=request.method,
            url=f"{self.public_url}{request.url.path}" + (f"?{query}" if query else ""),
            headers=request.headers,
            query=request.query_params,
            body=body,
            integration_id=request.path_params.get("integration_id"),
            received_at=datetime.now(UTC),
        )
        try:
            result = await integration.webhook(webhook_request, self.runtime.ingress_context(type_))
        except WebhookRejected as exc:
            if exc.status >= 500:
                self.log.error("webhook refused", type=type_, status=exc.status, reason=exc.message)
            return error(exc.status, exc.message)
        if isinstance(result, Reply):
            return Response(result.body, status_code=result.status, media_type=result.content_type)
        return await self._publish(type_, result)

    async def _publish(self, type_: str, accepted: Accept) -> Response:
        envelope_id = f"{type_}:{accepted.delivery_id}"
        try:
            body = encode_webhook(
                id=envelope_id,
                type_=type_,
                name=accepted.name,
                payload=accepted.payload,
                headers=accepted.headers,
                integration_id=accepted.integration_id,
                team_id=accepted.team_id,
                external_team_id=accepted.external_team_id,
            )
        except InvalidEnvelope as exc:  # the provider's event name or delivery id is not usable
            return error(400, f"malformed webhook: {exc}")
        try:
            await self.runtime.broker.publish(
                self.runtime.topology.incoming, f"{type_}.webhook.{accepted.name}", body, message_id=envelope_id
            )
        except BrokerUnavailable as exc:
            self.log.warning("webhook not accepted: broker unavailable", type=type_, error=redact(str(exc)))
            return json_response({"error": "broker unavailable, try again later"}, 503, headers={"Retry-After": "5"})
        self._published(type_).inc()
        if accepted.response is not None:
            return Response(accepted.response.body, accepted.response.status, media_type=accepted.response.content_type)
        return json_response({"status": "accepted", "id": envelope_id}, 202)

    async def healthz(self, _request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        checks = {"broker": self.runtime.broker.connected, "database": False}
        try:
            async with asyncio.timeout(2):
                checks["database"] = await self.runtime.pool.fetchval("SELECT 1") == 1
        except Exception:
            checks["database"] = False
        ready = all(checks.values())
        return json_response({"status": "ready" if ready else "not ready", **checks}, 200 if ready else 503)

    async def metrics(self, _request: Request) -> Response:
        body, content_type = render()
        return Response(body, media_type=content_type)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/webhooks/{type}", self.webhook, methods=["POST"]),
            Route("/webhooks/{type}/{integration_id}", self.webhook, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            *oauth_routes(self.runtime),
            *link_routes(self.runtime),
            *attachment_routes(self.runtime),
        ]


class IngressApp:
    """POST /webhooks/... goes straight to the ingress (the hot path: no router, no middleware
    stack); everything else, lifespan included, goes to the Starlette app."""

    def __init__(self, ingress: Ingress, app: Starlette) -> None:
        self.ingress = ingress
        self.app = app
        self.router = app.router  # tests and callers may inspect routes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/webhooks/"):
            parts = scope["path"][len("/webhooks/") :].split("/")
            if 1 <= len(parts) <= 2 and all(parts):
                request = Request(scope, receive)
                request.scope["path_params"] = {
                    "type": parts[0],
                    **({"integration_id": parts[1]} if len(parts) == 2 else {}),
                }
                try:
                    response = await self.ingress.webhook(request)
                except Exception:
                    self.ingress.log.exception("webhook failed")
                    response = error(500, "internal error")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(runtime: Runtime, *, manage_runtime: bool = False, extra_routes: Sequence[BaseRoute] = ()) -> IngressApp:
    """The ASGI app. With `manage_runtime`, the app's lifespan starts and stops the runtime
    (the broker connection is made in the background, so the ingress answers 503 until it is up)."""
    ingress = Ingress(runtime)
    gateway = ToolGateway(runtime)
    mcp = McpEndpoint(gateway)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with mcp.running():
            if not manage_runtime:
                try:
                    yield
                finally:
                    await gateway.close()
                return
            await runtime.start(broker=False)
            connecting = asyncio.create_task(runtime.broker.connect_with_retry())
            try:
                yield
            finally:
                connecting.cancel()
                await gateway.close()
                await runtime.stop()

    routes = [
        *ingress.routes(),
        *admin_routes(runtime),
        *tool_routes(gateway),
        Route("/mcp", mcp),
        *extra_routes,
    ]
    return IngressApp(ingress, Starlette(routes=routes, lifespan=lifespan))


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process's shutdown path owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


def server(app: Any, host: str, port: int) -> QuietServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
        backlog=2048,
        proxy_headers=False,  # the public URL comes from IW_PUBLIC_URL, never from request headers
    )
    return QuietServer(config)
