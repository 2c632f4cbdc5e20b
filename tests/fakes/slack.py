"""A fake Slack Web API: OAuth v2 (Basic auth, code exchange, token rotation), bot-token checks,
messages, threads (`conversations.replies`, paged), channel members, ephemeral messages, updates,
reactions, users and files. Answers can be injected per
method (a 429 with Retry-After, an `ok: false` error) to exercise the worker's retry rules."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.google import s256

CLIENT_ID = "111.222"
CLIENT_SECRET = "slack-client-secret"
TEAM_ID = "T0TEAM"
BOT_USER_ID = "U0BOT"
GOOD_CODE = "good-code"


@dataclass
class FakeSlackState:
    bot_tokens: set[str] = field(default_factory=set)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> team
    rotate: bool = False  # answer installs with token rotation on
    expected_challenge: str | None = None  # PKCE: the S256 challenge the install's verifier must match
    users: dict[str, str] = field(default_factory=dict)  # user id -> display name
    files: dict[str, bytes] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)  # method, body, token
    inject: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = field(default_factory=dict)
    file_requests: list[str | None] = field(default_factory=list)  # Authorization headers seen
    messages: list[dict[str, Any]] = field(default_factory=list)  # what chat.postMessage posted
    lose_answer: list[str] = field(default_factory=list)  # methods done, then answered 500 (once each)
    history_scope: bool = True  # without it, conversations.* answer missing_scope
    read_scope: bool = True  # without it, conversations.members answers missing_scope
    members: dict[str, list[str]] = field(default_factory=dict)  # channel -> its members' ids
    # Runs before a refresh is answered (in the server's loop): "another process" acting meanwhile.
    before_refresh: Callable[[], Awaitable[None]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.bot_tokens.clear()
            self.refresh_tokens.clear()
            self.rotate = False
            self.expected_challenge = None
            self.users.clear()
            self.files.clear()
            self.calls.clear()
            self.inject.clear()
            self.file_requests.clear()
            self.messages.clear()
            self.lose_answer.clear()
            self.history_scope = True
            self.read_scope = True
            self.members.clear()
            self.before_refresh = None

    def say(
        self,
        channel: str,
        ts: str,
        text: str,
        *,
        user: str | None = None,
        thread_ts: str | None = None,
        bot_id: str | None = None,
        subtype: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> None:
        """A message already in a channel or thread (someone's, a bot's, a system message)."""
        message: dict[str, Any] = {"channel": channel, "type": "message", "ts": ts, "text": text}
        extra = {"user": user, "thread_ts": thread_ts, "bot_id": bot_id, "subtype": subtype, "files": files}
        message.update({k: v for k, v in extra.items() if v is not None})
        with self.lock:
            self.messages.append(message)

    def new_bot_token(self) -> str:
        token = "xoxb-" + secrets.token_hex(12)
        with self.lock:
            self.bot_tokens.add(token)
        return token

    def of(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for name, body, _ in self.calls if name == method]

    def tokens_used(self, method: str) -> list[str | None]:
        with self.lock:
            return [token for name, _, token in self.calls if name == method]


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return user, password


def build_app(state: FakeSlackState) -> Starlette:
    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            return dict(orjson.loads(raw or b"{}"))
        return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

    def install_answer(token: str) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "ok": True,
            "access_token": token,
            "token_type": "bot",
            "scope": "app_mentions:read,chat:write,im:history,files:read,reactions:write,users:read",
            "bot_user_id": BOT_USER_ID,
            "app_id": "A0APP",
            "team": {"id": TEAM_ID, "name": "Acme"},
            "enterprise": None,
            "is_enterprise_install": False,
            "authed_user": {"id": "U0ADMIN"},
        }
        if state.rotate:
            refresh = "xoxe-" + secrets.token_hex(12)
            with state.lock:
                state.refresh_tokens[refresh] = TEAM_ID
            answer.update({"refresh_token": refresh, "expires_in": 43200})
        return answer

    async def oauth_access(request: Request) -> JSONResponse:
        body = await body_of(request)
        with state.lock:
            state.calls.append(("oauth.v2.access", body, None))
        if _basic(request) != (CLIENT_ID, CLIENT_SECRET):
            return JSONResponse({"ok": False, "error": "invalid_client"})
        if body.get("grant_type") == "refresh_token":
            if state.before_refresh is not None:
                await state.before_refresh()
            with state.lock:
                known = state.refresh_tokens.pop(str(body.get("refresh_token")), None)
            if known is None:
                return JSONResponse({"ok": False, "error": "invalid_refresh_token"})
            return JSONResponse(install_answer(state.new_bot_token()))
        if body.get("code") != GOOD_CODE:
            return JSONResponse({"ok": False, "error": "invalid_code"})
        if (
            state.expected_challenge is not None
            and s256(str(body.get("code_verifier", ""))) != state.expected_challenge
        ):
            return JSONResponse({"ok": False, "error": "invalid_code_verifier"})
        return JSONResponse(install_answer(state.new_bot_token()))

    async def method(request: Request) -> Response:
        name = request.path_params["method"]
        body = await body_of(request)
        header = request.headers.get("authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        with state.lock:
            state.calls.append((name, body, token))
            injected = state.inject.get(name)
            answer = injected.pop(0) if injected else None
        if token not in state.bot_tokens:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        if answer is not None:
            status, payload, headers = answer
            return JSONResponse(payload, status, headers=headers)
        if name == "auth.test":
            return JSONResponse({"ok": True, "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": "B0BOT"})
        if name == "users.info":
            user = str(body.get("user"))
            return JSONResponse(
                {"ok": True, "user": {"id": user, "profile": {"display_name": state.users.get(user, "")}}}
            )
        if name == "chat.postMessage":
            message = {"ts": f"{time.time():.6f}", "text": body.get("text"), "user": BOT_USER_ID}
            if body.get("thread_ts"):
                message["thread_ts"] = body["thread_ts"]
            if body.get("metadata"):
                message["metadata"] = body["metadata"]
            with state.lock:
                state.messages.append({"channel": body.get("channel"), **message})
                lost = name in state.lose_answer
                if lost:
                    state.lose_answer.remove(name)
            if lost:  # Slack posted it, the answer never arrived
                return Response(b"upstream connect error", 503)
            return JSONResponse({"ok": True, "channel": body.get("channel"), "ts": message["ts"]})
        if name in ("conversations.history", "conversations.replies"):
            if not state.history_scope:
                return JSONResponse({"ok": False, "error": "missing_scope", "needed": "channels:history"})
            oldest = float(body.get("oldest") or 0)
            with state.lock:
                found = [
                    {k: v for k, v in m.items() if k != "channel"}
                    for m in state.messages
                    if m["channel"] == body.get("channel") and float(m["ts"]) > oldest
                    and (name == "conversations.history" or body.get("ts") in (m.get("thread_ts"), m["ts"]))
                ]  # fmt: skip
            if name == "conversations.history":
                return JSONResponse({"ok": True, "messages": found[::-1], "has_more": False})
            # replies: the thread's first message, then its replies, oldest first, a page at a time
            found.sort(key=lambda m: float(m["ts"]))
            start, size = int(body.get("cursor") or 0), int(body.get("limit") or 1000)
            more = start + size < len(found)
            return JSONResponse(
                {
                    "ok": True,
                    "messages": found[start : start + size],
                    "has_more": more,
                    "response_metadata": {"next_cursor": str(start + size) if more else ""},
                }
            )
        if name == "conversations.members":
            if not state.read_scope:
                return JSONResponse({"ok": False, "error": "missing_scope", "needed": "channels:read"})
            with state.lock:
                members = list(state.members.get(str(body.get("channel")), []))
            return JSONResponse({"ok": True, "members": members, "response_metadata": {"next_cursor": ""}})
        if name == "chat.postEphemeral":
            return JSONResponse({"ok": True, "message_ts": f"{time.time():.6f}"})
        if name == "chat.update":
            with state.lock:
                target = next(
                    (m for m in state.messages if m["channel"] == body.get("channel") and m["ts"] == body.get("ts")),
                    None,
                )
                if target is not None and target.get("user") == BOT_USER_ID:
                    target.update({"text": body.get("text"), "edited": True})
                    if body.get("blocks"):
                        target["blocks"] = body["blocks"]
            if target is None:
                return JSONResponse({"ok": False, "error": "message_not_found"})
            if target.get("user") != BOT_USER_ID:
                return JSONResponse({"ok": False, "error": "cant_update_message"})
            return JSONResponse({"ok": True, "channel": body.get("channel"), "ts": body.get("ts")})
        if name == "reactions.add":
            return JSONResponse({"ok": True})
        return JSONResponse({"ok": False, "error": "unknown_method"})

    async def file(request: Request) -> Response:
        header = request.headers.get("authorization")
        with state.lock:
            state.file_requests.append(header)
        token = header[7:] if header and header.startswith("Bearer ") else None
        if token not in state.bot_tokens:
            return Response(b"<html>sign in</html>", 302, headers={"location": "/signin"})
        content = state.files.get(request.path_params["name"])
        if content is None:
            return Response(b"", 404)
        return Response(content, media_type="image/png")

    return Starlette(
        routes=[
            Route("/api/oauth.v2.access", oauth_access, methods=["POST"]),
            Route("/api/{method}", method, methods=["POST"]),
            Route("/files-pri/{name}", file, methods=["GET"]),
        ]
    )
