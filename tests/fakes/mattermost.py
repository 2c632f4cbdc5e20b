"""A fake Mattermost server: REST v4 (users/me, posts, patches, reactions, direct channels, files,
threads, channel members, and for catching up: the bot's channels, a channel's posts since a
time, users by id)
and a real WebSocket endpoint (`/api/v4/websocket`, bearer token on the upgrade) that sends
`hello` and then whatever the test broadcasts. It counts live sockets, so a test can tell how
many listeners are connected at once."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

BOT_ID = "bot0000000000000000000000a"
BOT_USERNAME = "planner"
TOKEN = "mm-bot-token-0123456789"


@dataclass
class FakeMattermostState:
    token: str = TOKEN
    posts: list[dict[str, Any]] = field(default_factory=list)
    patches: list[dict[str, Any]] = field(default_factory=list)
    reactions: list[dict[str, Any]] = field(default_factory=list)
    direct_channels: list[list[str]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    inject_posts: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    lose_post_answers: int = 0  # posts made, then answered 502 (the answer lost on the way)
    channels: list[dict[str, Any]] = field(default_factory=list)  # the bot's channels
    history: list[dict[str, Any]] = field(default_factory=list)  # posts already on the server
    users: dict[str, str] = field(default_factory=dict)  # id -> username
    history_requests: list[tuple[str, int]] = field(default_factory=list)  # (channel id, since)
    members: dict[str, set[str]] = field(default_factory=dict)  # channel id -> its members' ids
    thread_failure: int | None = None  # GET /posts/{id}/thread answers this status
    sockets: dict[int, WebSocket] = field(default_factory=dict)
    connects: int = 0
    max_concurrent: int = 0
    loop: asyncio.AbstractEventLoop | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def reset(self) -> None:
        with self.lock:
            self.token = TOKEN
            self.posts.clear()
            self.patches.clear()
            self.reactions.clear()
            self.direct_channels.clear()
            self.files.clear()
            self.inject_posts.clear()
            self.lose_post_answers = 0
            self.channels.clear()
            self.history.clear()
            self.users.clear()
            self.history_requests.clear()
            self.members.clear()
            self.thread_failure = None
            self.connects = 0
            self.max_concurrent = len(self.sockets)

    def say(
        self,
        post_id: str,
        channel_id: str,
        user_id: str,
        message: str,
        *,
        root_id: str = "",
        create_at: int,
        type_: str = "",
        props: dict[str, Any] | None = None,
        deleted: bool = False,
    ) -> dict[str, Any]:
        """A post already on the server (someone's, a bot's, a system message)."""
        post = {
            "id": post_id,
            "channel_id": channel_id,
            "user_id": user_id,
            "message": message,
            "root_id": root_id,
            "create_at": create_at,
            "update_at": create_at,
            "delete_at": create_at if deleted else 0,
            "type": type_,
            "props": props or {},
        }
        with self.lock:
            self.history.append(post)
        return post

    @property
    def connected(self) -> int:
        with self.lock:
            return len(self.sockets)

    def broadcast(self, event: dict[str, Any]) -> int:
        """Send an event to every connected listener (from the test's thread); how many got it."""
        with self.lock:
            sockets = list(self.sockets.values())
            loop = self.loop
        if loop is None:
            return 0
        text = orjson.dumps(event).decode()
        for socket in sockets:
            asyncio.run_coroutine_threadsafe(socket.send_text(text), loop).result(timeout=5)
        return len(sockets)

    def close_all(self) -> None:
        """Drop every socket, as a restarting server would."""
        with self.lock:
            sockets = list(self.sockets.values())
            loop = self.loop
        for socket in sockets:
            if loop is not None:
                asyncio.run_coroutine_threadsafe(socket.close(code=1001), loop).result(timeout=5)


def posted_event(
    *,
    message: str,
    user_id: str = "alice000000000000000000000",
    sender: str = "@alice",
    channel_id: str = "chan00000000000000000000aa",
    channel_type: str = "O",
    mentions: list[str] | None = None,
    post_id: str | None = None,
    root_id: str = "",
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    post: dict[str, Any] = {
        "id": post_id or secrets.token_hex(13),
        "channel_id": channel_id,
        "user_id": user_id,
        "message": message,
        "root_id": root_id,
        "create_at": 1700000000000,
    }
    if files:
        post["file_ids"] = [f["id"] for f in files]
        post["metadata"] = {"files": files}
    data: dict[str, Any] = {
        "channel_type": channel_type,
        "channel_name": "town-square" if channel_type != "D" else f"{BOT_ID}__{user_id}",
        "sender_name": sender,
        "post": orjson.dumps(post).decode(),  # Mattermost sends the post as a JSON string
    }
    if mentions is not None:
        data["mentions"] = orjson.dumps(mentions).decode()
    return {"event": "posted", "data": data, "broadcast": {"channel_id": channel_id}, "seq": 1}


def build_app(state: FakeMattermostState) -> Starlette:
    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {state.token}"

    def unauthorised() -> JSONResponse:
        return JSONResponse(
            {
                "id": "api.context.session_expired.app_error",
                "message": "Invalid or expired session",
                "status_code": 401,
            },
            401,
        )

    async def me(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        return JSONResponse({"id": BOT_ID, "username": BOT_USERNAME, "is_bot": True})

    async def posts(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        body = await request.json()
        with state.lock:
            injected = state.inject_posts.pop(0) if state.inject_posts else None
        if injected is not None:
            status, headers = injected
            return JSONResponse({"message": "injected", "status_code": status}, status, headers=headers)
        post = {"id": secrets.token_hex(13), **body}
        now = int(time.time() * 1000)
        with state.lock:
            state.posts.append(post)
            state.history.append(
                {"root_id": "", **post, "user_id": BOT_ID, "create_at": now, "update_at": now, "delete_at": 0}
            )
            lost = state.lose_post_answers > 0
            state.lose_post_answers -= 1 if lost else 0
        if lost:
            return Response(b"bad gateway", 502)
        return JSONResponse(post, 201)

    async def patch(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        body = await request.json()
        with state.lock:
            state.patches.append({"id": request.path_params["id"], **body})
            post = next((p for p in state.history if p["id"] == request.path_params["id"]), None)
            if post is not None and post["user_id"] == BOT_ID:
                post.update({"message": body.get("message", post["message"]), "edit_at": int(time.time() * 1000)})
                post = dict(post)
        if post is None:
            return JSONResponse({"id": "app.post.get.app_error", "status_code": 404}, 404)
        if post["user_id"] != BOT_ID:
            return JSONResponse({"id": "api.context.permissions.app_error", "status_code": 403}, 403)
        return JSONResponse(post)

    async def thread(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        if state.thread_failure is not None:
            return JSONResponse({"status_code": state.thread_failure}, state.thread_failure)
        with state.lock:
            post = next((p for p in state.history if p["id"] == request.path_params["id"]), None)
            root = (post.get("root_id") or post["id"]) if post is not None else None
            found = [dict(p) for p in state.history if root is not None and root in (p["id"], p.get("root_id"))]
        if not found:
            return JSONResponse({"id": "app.post.get.app_error", "status_code": 404}, 404)
        found.sort(key=lambda p: p["create_at"], reverse=True)
        return JSONResponse({"order": [p["id"] for p in found], "posts": {p["id"]: p for p in found}})

    async def member(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        channel_id, user_id = request.path_params["id"], request.path_params["user"]
        with state.lock:
            known = user_id in state.members.get(channel_id, set())
        if not known:
            return JSONResponse({"id": "app.channel.get_member.missing.app_error", "status_code": 404}, 404)
        return JSONResponse({"channel_id": channel_id, "user_id": user_id, "roles": "channel_user"})

    async def reactions(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        body = await request.json()
        with state.lock:
            state.reactions.append(body)
        return JSONResponse(body, 201)

    async def direct(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        members = sorted(await request.json())
        with state.lock:
            state.direct_channels.append(members)
        return JSONResponse({"id": "dm-" + "-".join(m[:5] for m in members), "type": "D"}, 201)

    async def file(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        content = state.files.get(request.path_params["id"])
        if content is None:
            return JSONResponse({"message": "not found"}, 404)
        return Response(content, media_type="audio/ogg")

    async def user_channels(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        with state.lock:
            return JSONResponse(list(state.channels))

    async def channel_posts(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        channel_id = request.path_params["id"]
        since = int(request.query_params.get("since", "0"))
        with state.lock:
            state.history_requests.append((channel_id, since))
            found = [
                p for p in state.history
                if p["channel_id"] == channel_id and max(p["create_at"], p.get("update_at", 0)) > since
            ]  # fmt: skip
        found.sort(key=lambda p: p["create_at"], reverse=True)
        return JSONResponse({"order": [p["id"] for p in found], "posts": {p["id"]: p for p in found}})

    async def users_by_id(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        ids = await request.json()
        with state.lock:
            return JSONResponse([{"id": i, "username": state.users[i]} for i in ids if i in state.users])

    async def websocket(socket: WebSocket) -> None:
        if socket.headers.get("authorization") != f"Bearer {state.token}":
            await socket.close(code=1008)
            return
        await socket.accept()
        number = next(state._seq)
        with state.lock:
            state.loop = asyncio.get_running_loop()
            state.sockets[number] = socket
            state.connects += 1
            state.max_concurrent = max(state.max_concurrent, len(state.sockets))
        try:
            await socket.send_text(
                orjson.dumps({"event": "hello", "data": {"server_version": "9.11"}, "seq": 0}).decode()
            )
            while True:
                await socket.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            with state.lock:
                state.sockets.pop(number, None)

    return Starlette(
        routes=[
            Route("/api/v4/users/me", me, methods=["GET"]),
            Route("/api/v4/posts", posts, methods=["POST"]),
            Route("/api/v4/posts/{id}/patch", patch, methods=["PUT"]),
            Route("/api/v4/posts/{id}/thread", thread, methods=["GET"]),
            Route("/api/v4/channels/{id}/members/{user}", member, methods=["GET"]),
            Route("/api/v4/reactions", reactions, methods=["POST"]),
            Route("/api/v4/channels/direct", direct, methods=["POST"]),
            Route("/api/v4/files/{id}", file, methods=["GET"]),
            Route("/api/v4/users/ids", users_by_id, methods=["POST"]),
            Route("/api/v4/users/{id}/channels", user_channels, methods=["GET"]),
            Route("/api/v4/channels/{id}/posts", channel_posts, methods=["GET"]),
            WebSocketRoute("/api/v4/websocket", websocket),
        ]
    )
