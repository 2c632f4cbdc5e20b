"""A fake Telegram Bot API: `POST /bot<token>/<method>`, known bots by token, chats the bots can
write to, sent messages and the webhook each bot was given."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class FakeTelegramState:
    bots: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> getMe result
    chats: set[int] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)
    send_attempts: int = 0
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> setWebhook body
    calls: list[str] = field(default_factory=list)  # method names, in order
    fail_methods: dict[str, int] = field(default_factory=dict)  # method -> HTTP status to answer
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.bots.clear()
            self.chats.clear()
            self.sent.clear()
            self.send_attempts = 0
            self.webhooks.clear()
            self.calls.clear()
            self.fail_methods.clear()


def _fail(code: int, description: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error_code": code, "description": description}, code)


def build_app(state: FakeTelegramState) -> Starlette:
    async def method(request: Request) -> JSONResponse:
        token, name = request.path_params["token"], request.path_params["method"]
        body: dict[str, Any] = await request.json() if await request.body() else {}
        with state.lock:
            state.calls.append(name)
        me = state.bots.get(token)
        if me is None:
            return _fail(401, "Unauthorized")
        if name in state.fail_methods:
            return _fail(state.fail_methods[name], "Internal Server Error: injected")
        if name == "getMe":
            return JSONResponse({"ok": True, "result": me})
        if name == "setWebhook":
            state.webhooks[token] = body
            return JSONResponse({"ok": True, "result": True, "description": "Webhook was set"})
        if name == "deleteWebhook":
            state.webhooks.pop(token, None)
            return JSONResponse({"ok": True, "result": True, "description": "Webhook was deleted"})
        if name == "sendMessage":
            with state.lock:
                state.send_attempts += 1
            if body.get("chat_id") not in state.chats:
                return _fail(400, "Bad Request: chat not found")
            with state.lock:
                message = {
                    "message_id": len(state.sent) + 1,
                    "chat": {"id": body["chat_id"], "type": "private"},
                    "date": 1_790_000_000,
                    "text": body["text"],
                    "from": me,
                }
                state.sent.append({**message, "token": token, "request": body})
            return JSONResponse({"ok": True, "result": message})
        return _fail(404, "Not Found: method not found")

    return Starlette(routes=[Route("/bot{token}/{method}", method, methods=["POST"])])
