"""What every request to the platform API passes before a route sees it (admin, OAuth, links,
attachments, tools, MCP): the same limits as the webhook ingress.

    body over IW_MAX_BODY_BYTES        413, before more than the limit is read
    a body that is not JSON            415 (POST, PUT, PATCH with a body)
    NUL in a path or query parameter   400 naming it (PostgreSQL cannot store U+0000)
    NUL anywhere in a JSON body        400 naming the field

The body is read here, once, and handed to the route as it came.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.core.text import NUL, REFUSAL, nul_field

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = orjson.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _refused(field: str) -> dict[str, Any]:
    return {"error": "invalid request", "fields": {field: [REFUSAL]}}


def _json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class RequestGuard:
    def __init__(self, app: ASGIApp, router: Router, *, max_body_bytes: int) -> None:
        self.app = app
        self.router = router
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self._nul_in_url(scope)
        if refused is not None:
            await _answer(send, 400, _refused(refused))
            return
        if scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _answer(send, 413, {"error": f"body larger than {self.max_body_bytes} bytes"})
            return
        body, more = await self._read(receive)
        if body is None:
            await _answer(send, 413, {"error": f"body larger than {self.max_body_bytes} bytes"})
            return
        if body:
            if not _json(headers.get("content-type", "")):
                await _answer(send, 415, {"error": "the body must be JSON (Content-Type: application/json)"})
                return
            try:
                field = nul_field(orjson.loads(body))
            except orjson.JSONDecodeError:
                field = None  # the route answers malformed JSON in its own words
            if field is not None:
                await _answer(send, 400, _refused(field))
                return
        await self.app(scope, _replay(body, more, receive), send)

    def _nul_in_url(self, scope: Scope) -> str | None:
        for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            if NUL in name or NUL in value:
                return name.replace(NUL, "") or "query"
        if NUL not in scope["path"] and "%00" not in scope.get("raw_path", b"").decode("latin-1"):
            return None
        for route in self.router.routes:
            match, child = route.matches(scope)
            if match != Match.NONE:
                for name, value in child.get("path_params", {}).items():
                    if NUL in unquote(str(value)):
                        return str(name)
        return "path"

    async def _read(self, receive: Receive) -> tuple[bytes | None, bool]:
        """The body (None when over the limit), and whether the client is still there."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(parts), False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None, True
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts), True


def _replay(body: bytes, connected: bool, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if not connected:
            return {"type": "http.disconnect"}
        return await receive()

    return replay
