"""The ingress: verify provider webhooks, publish them (confirmed), answer. Nothing else.

POST /webhooks/{type}[/{integration_id}]   202 once the broker confirmed; 401 bad signature,
                                           400 malformed, 404 unknown type, 413 too large,
                                           503 broker unavailable (the provider retries)
GET  /healthz                              the process is up
GET  /readyz                               broker and database reachable
GET  /metrics                              Prometheus

A plain ASGI app, no framework on the hot path: the body is read straight from the server
(with its limit), the integration's receiver verifies it, the envelope is encoded once and
published; many requests' publishes share one write to the broker. Any other path goes to
`fallback` (the platform's app, when one process serves both), else 404.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from schemas.envelope import InvalidEnvelope, encode_webhook
from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.runtime import health, metrics
from worker.runtime.broker import BrokerUnavailable
from worker.runtime.lanes import Lanes
from worker.runtime.runtime import Runtime
from worker.sdk.context import Context
from worker.sdk.declare import Accept, Integration, Reply, WebhookRejected, WebhookRequest
from worker.sdk.keys import Published

ASGIApp = Callable[[dict[str, Any], Callable[[], Any], Callable[[dict[str, Any]], Any]], Any]
_JSON = [(b"content-type", b"application/json")]
_UNAVAILABLE = orjson.dumps({"error": "broker unavailable, try again later"})


class BodyTooLarge(Exception):
    pass


class Disconnected(Exception):
    pass


async def read_body(receive: Callable[[], Any], headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(
    send: Callable[[dict[str, Any]], Any],
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    head = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(headers or ())]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def error(status: int, message: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"error": message})


class Ingress:
    def __init__(
        self,
        runtime: Runtime,
        *,
        fallback: ASGIApp | None = None,
        lifespan: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.public_url = runtime.settings.public_url.rstrip("/")
        self.fallback = fallback
        self.lifespan = lifespan
        self.log = get_logger(component="ingress")
        self._contexts: dict[str, Context] = {}
        self._webhooks: dict[str, Integration] = {i.type: i for i in runtime.registry if i.webhook is not None}
        self.lanes = Lanes(runtime.settings, runtime.topology, runtime.broker)  # a team over its rate: bulk lane

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[..., Any]) -> None:
        kind = scope["type"]
        path: str = scope.get("path", "")
        if kind == "http" and path.startswith("/webhooks/"):
            await self.webhook(scope, receive, send)
        elif kind == "http" and path in health.HEALTH_PATHS:
            await self.probe(path, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif self.fallback is not None:
            await self.fallback(scope, receive, send)
        elif kind == "http":
            await respond(send, *error(404, "not found"))

    # --- webhooks --------------------------------------------------------------------------------------

    async def webhook(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[..., Any]) -> None:
        started = time.perf_counter()
        parts = scope["path"][len("/webhooks/") :].split("/")
        type_ = parts[0]
        integration = self._webhooks.get(type_)
        if integration is None or not 1 <= len(parts) <= 2 or not all(parts):
            metrics.child(metrics.WEBHOOKS_RECEIVED, "unknown", "404").inc()
            await respond(send, *error(404, f"unknown integration type {type_[:64]!r}"))
            return
        if scope["method"] != "POST":
            await respond(send, *error(405, "webhooks are POSTed"), headers=[(b"allow", b"POST")])
            return
        try:
            status, body, content_type, extra = await self._webhook(scope, receive, integration, parts)
        except Disconnected:  # the client went away (or sent a malformed body the server refused)
            self.log.info("webhook client disconnected before its body was read", type=type_)
            metrics.child(metrics.WEBHOOKS_RECEIVED, type_, "499").inc()
            return
        except Exception:
            self.log.exception("webhook failed", type=type_)
            status, body, content_type, extra = *error(500, "internal error"), b"application/json", None
        await respond(send, status, body, content_type, extra)
        metrics.child(metrics.WEBHOOKS_RECEIVED, type_, str(status)).inc()
        metrics.child(metrics.INGRESS_SECONDS, type_).observe(time.perf_counter() - started)

    async def _webhook(
        self, scope: dict[str, Any], receive: Callable[[], Any], integration: Integration, parts: list[str]
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]] | None]:
        type_ = integration.type
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.settings.body_limit(type_, integration.max_body_bytes)
        try:
            body = await read_body(receive, headers, limit)
        except BodyTooLarge:
            return *error(413, f"body larger than {limit} bytes"), b"application/json", None
        query = scope.get("query_string", b"").decode("latin-1")
        request = WebhookRequest(
            type=type_,
            method="POST",
            url=f"{self.public_url}{scope['path']}" + (f"?{query}" if query else ""),
            headers=headers,
            query=_query(query),
            body=body,
            integration_id=parts[1] if len(parts) == 2 else None,
            received_at=datetime.now(UTC),
        )
        assert integration.webhook is not None
        try:
            result = await integration.webhook(request, self._context(type_))
        except WebhookRejected as exc:
            if exc.status >= 500:
                self.log.error("webhook refused", type=type_, status=exc.status, reason=exc.message)
            return *error(exc.status, exc.message), b"application/json", None
        if isinstance(result, Reply):
            return result.status, result.body, result.content_type.encode(), None
        return await self._publish(type_, result)

    def _context(self, type_: str) -> Context:
        ctx = self._contexts.get(type_)
        if ctx is None:
            ctx = self._contexts[type_] = self.runtime.receiver_context(type_)
        return ctx

    async def _publish(
        self, type_: str, accepted: Accept
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]] | None]:
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
            return *error(400, f"malformed webhook: {exc}"), b"application/json", None
        key = self.runtime.registry.key_of(
            Published(
                envelope_id,
                type_,
                "webhook",
                accepted.name,
                accepted.payload,
                accepted.integration_id,
                accepted.team_id,
                accepted.external_team_id,
            )
        )
        try:
            outgoing = await self.lanes.route(
                type_, f"{type_}.webhook.{accepted.name}", body, message_id=envelope_id, key=key
            )
            await self.runtime.broker.publish_message(outgoing)
        except BrokerUnavailable as exc:
            self.log.warning("webhook not accepted: broker unavailable", type=type_, error=redact(str(exc)))
            return 503, _UNAVAILABLE, b"application/json", [(b"retry-after", b"5")]
        metrics.child(metrics.PUBLISHED, type_).inc()
        if accepted.response is not None:
            response = accepted.response
            return response.status, response.body, response.content_type.encode(), None
        return 202, orjson.dumps({"status": "accepted", "id": envelope_id}), b"application/json", None

    # --- probes and lifespan ----------------------------------------------------------------------------

    async def probe(self, path: str, send: Callable[..., Any]) -> None:
        status, body, content_type = await health.probe(self.runtime, path)
        await respond(send, status, body, content_type.encode())

    async def _lifespan(self, receive: Callable[[], Any], send: Callable[..., Any]) -> None:
        manager = self.lifespan() if self.lifespan is not None else None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if manager is not None:
                        await manager.__aenter__()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": redact(str(exc))})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if manager is not None:
                    await manager.__aexit__(None, None, None)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _query(query: str) -> dict[str, str]:
    return dict(parse_qsl(query, keep_blank_values=True)) if query else {}
