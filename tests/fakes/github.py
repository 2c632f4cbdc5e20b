"""A fake GitHub API: App JWT checked against the App's public key, installation tokens
minted and checked, comments stored. Failures can be injected per test."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class FakeGitHubState:
    app_id: str
    public_key_pem: str
    installations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    token_requests: int = 0
    comments: list[dict[str, Any]] = field(default_factory=list)
    comment_attempts: int = 0
    fail_comments: list[int] = field(default_factory=list)  # statuses to answer, one per attempt
    always_fail_comments: int | None = None
    comment_delay: float = 0.0
    comment_started: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.installations.clear()
            self.tokens.clear()
            self.token_requests = 0
            self.comments.clear()
            self.comment_attempts = 0
            self.fail_comments.clear()
            self.always_fail_comments = None
            self.comment_delay = 0.0
            self.comment_started.clear()


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:] if header.startswith("Bearer ") else None


def build_app(state: FakeGitHubState) -> Starlette:
    def app_jwt_ok(request: Request) -> bool:
        token = _bearer(request)
        if not token:
            return False
        try:
            claims = jwt.decode(token, state.public_key_pem, algorithms=["RS256"])
        except jwt.InvalidTokenError:
            return False
        return str(claims.get("iss")) == state.app_id and claims["exp"] - claims["iat"] <= 600

    def installation_of(request: Request) -> int | None:
        token = _bearer(request)
        return state.tokens.get(token) if token else None

    async def access_tokens(request: Request) -> JSONResponse:
        if not app_jwt_ok(request):
            return JSONResponse({"message": "A JSON web token could not be decoded"}, 401)
        installation_id = int(request.path_params["id"])
        if installation_id not in state.installations:
            return JSONResponse({"message": "Not Found"}, 404)
        token = "ghs_" + secrets.token_hex(18)
        with state.lock:
            state.tokens[token] = installation_id
            state.token_requests += 1
        expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        return JSONResponse({"token": token, "expires_at": expires, "permissions": {"issues": "write"}}, 201)

    async def get_installation(request: Request) -> JSONResponse:
        if not app_jwt_ok(request):
            return JSONResponse({"message": "A JSON web token could not be decoded"}, 401)
        installation_id = int(request.path_params["id"])
        if installation_id not in state.installations:
            return JSONResponse({"message": "Not Found"}, 404)
        return JSONResponse({"id": installation_id, "account": {"login": "acme", "id": 1}})

    async def installation_repositories(request: Request) -> JSONResponse:
        installation_id = installation_of(request)
        if installation_id is None:
            return JSONResponse({"message": "Bad credentials"}, 401)
        repos = state.installations[installation_id]
        return JSONResponse({"total_count": len(repos), "repositories": repos})

    async def comments(request: Request) -> JSONResponse:
        installation_id = installation_of(request)
        if installation_id is None:
            return JSONResponse({"message": "Bad credentials"}, 401)
        owner, repo, number = (
            request.path_params["owner"],
            request.path_params["repo"],
            request.path_params["n"],
        )
        if request.method == "GET":
            found = [c for c in state.comments if c["repository"] == f"{owner}/{repo}" and c["number"] == int(number)]
            return JSONResponse(found)
        with state.lock:
            state.comment_attempts += 1
            status = state.fail_comments.pop(0) if state.fail_comments else state.always_fail_comments
        if status is not None:
            return JSONResponse({"message": "injected failure"}, status)
        body = (await request.json())["body"]
        comment = {
            "id": len(state.comments) + 1000,
            "repository": f"{owner}/{repo}",
            "number": int(number),
            "body": body,
            "html_url": f"https://github.com/{owner}/{repo}/issues/{number}#issuecomment-{len(state.comments) + 1000}",
            "installation_id": installation_id,
            "created_at": time.time(),
        }
        with state.lock:
            state.comments.append(comment)
        state.comment_started.set()
        if state.comment_delay:
            await asyncio.sleep(state.comment_delay)
        return JSONResponse(comment, 201)

    return Starlette(
        routes=[
            Route("/app/installations/{id:int}/access_tokens", access_tokens, methods=["POST"]),
            Route("/app/installations/{id:int}", get_installation, methods=["GET"]),
            Route("/installation/repositories", installation_repositories, methods=["GET"]),
            Route("/repos/{owner}/{repo}/issues/{n:int}/comments", comments, methods=["GET", "POST"]),
        ]
    )
