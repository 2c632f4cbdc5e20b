"""A fake Twilio: the Messages API (Basic auth, injected errors such as 20429, 21211, 63016) and
media URLs that, like Twilio's, redirect to a storage host which must not receive the credentials."""

from __future__ import annotations

import base64
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-auth-token-0123456789"


@dataclass
class FakeTwilioState:
    messages: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    inject: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    media_auth: list[str | None] = field(default_factory=list)  # Authorization seen by the media URL
    media_redirect: str | None = None  # where the media URL redirects instead of its storage
    storage_auth: list[str | None] = field(default_factory=list)  # ... and by the storage it redirects to
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.attempts = 0
            self.inject.clear()
            self.media.clear()
            self.media_auth.clear()
            self.storage_auth.clear()
            self.media_redirect = None

    def bodies(self) -> list[str]:
        with self.lock:
            return [str(m.get("Body")) for m in self.messages]


def _basic_ok(request: Request) -> bool:
    expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    return request.headers.get("authorization") == expected


def build_app(state: FakeTwilioState) -> Starlette:
    async def messages(request: Request) -> JSONResponse:
        if request.path_params["sid"] != ACCOUNT_SID or not _basic_ok(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, 401)
        form = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        with state.lock:
            state.attempts += 1
            injected = state.inject.pop(0) if state.inject else None
        if injected is not None:
            status, body, headers = injected
            return JSONResponse(body, status, headers=headers)
        message: dict[str, Any] = {}
        for key, value in form:
            message.setdefault(key, value) if key != "MediaUrl" else message.setdefault("MediaUrl", []).append(value)
        message["sid"] = "SM" + secrets.token_hex(16)
        with state.lock:
            state.messages.append(message)
        return JSONResponse({"sid": message["sid"], "status": "queued", "to": message.get("To")}, 201)

    async def media(request: Request) -> Response:
        with state.lock:
            state.media_auth.append(request.headers.get("authorization"))
        if not _basic_ok(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, 401)
        if state.media_redirect is not None:
            return RedirectResponse(state.media_redirect, 302)
        # Twilio answers with a redirect to its storage; use another host name for the same server.
        host = "localhost" if request.url.hostname == "127.0.0.1" else "127.0.0.1"
        return RedirectResponse(f"http://{host}:{request.url.port}/storage/{request.path_params['me']}", 307)

    async def storage(request: Request) -> Response:
        with state.lock:
            state.storage_auth.append(request.headers.get("authorization"))
        found = state.media.get(request.path_params["me"])
        if found is None:
            return Response(b"", 404)
        return Response(found[0], media_type=found[1])

    return Starlette(
        routes=[
            Route("/2010-04-01/Accounts/{sid}/Messages.json", messages, methods=["POST"]),
            Route("/2010-04-01/Accounts/{sid}/Messages/{mm}/Media/{me}", media, methods=["GET"]),
            Route("/storage/{me}", storage, methods=["GET"]),
        ]
    )
