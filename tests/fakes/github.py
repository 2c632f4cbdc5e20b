"""A fake GitHub API: App JWT checked against the App's public key, installation tokens
minted and checked, comments stored. Failures can be injected per test. Repositories, branches,
pull requests and reviews are served as GitHub does: only to an installation that reaches the
repository (404 otherwise), paginated with `per_page`/`page` and a `Link` header."""

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

from tests.fakes.github_accounts import FakeGitHubAccounts, account_routes


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
    fail_after_storing: list[int] = field(default_factory=list)  # store the comment, then answer these, once each
    comment_delay: float = 0.0
    comment_started: threading.Event = field(default_factory=threading.Event)
    comment_listings: int = 0  # GET .../comments: a repeat looking for its marker
    # owner/name -> branches ({name, commit: {sha}, protected}) and pull requests (GitHub's objects)
    branches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pulls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reviews: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    requested_teams: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    listings: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path, query) of each GET listing
    lock: threading.Lock = field(default_factory=threading.Lock)
    accounts: FakeGitHubAccounts = field(default_factory=FakeGitHubAccounts)  # user OAuth, GET /user

    def reset(self) -> None:
        self.accounts.reset()
        with self.lock:
            self.installations.clear()
            self.tokens.clear()
            self.token_requests = 0
            self.comments.clear()
            self.comment_attempts = 0
            self.fail_comments.clear()
            self.always_fail_comments = None
            self.fail_after_storing.clear()
            self.comment_delay = 0.0
            self.comment_started.clear()
            self.comment_listings = 0
            self.branches.clear()
            self.pulls.clear()
            self.reviews.clear()
            self.requested_teams.clear()
            self.listings.clear()


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:] if header.startswith("Bearer ") else None


def _page(request: Request, items: list[Any], state: FakeGitHubState, key: str | None = None) -> JSONResponse:
    """One page of a listing as GitHub serves it: `per_page` (default 30, at most 100), `page`,
    and a `Link` header naming the next page while there is one."""
    with state.lock:
        state.listings.append((request.url.path, dict(request.query_params)))
    per_page = min(int(request.query_params.get("per_page", "30")), 100)
    page = int(request.query_params.get("page", "1"))
    chunk = items[(page - 1) * per_page : page * per_page]
    headers = {}
    if page * per_page < len(items):
        headers["Link"] = f'<{request.url.include_query_params(page=page + 1)}>; rel="next"'
    body: Any = {"total_count": len(items), key: chunk} if key is not None else chunk
    return JSONResponse(body, headers=headers)


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
        return _page(request, state.installations[installation_id], state, key="repositories")

    def reachable(request: Request) -> tuple[str, JSONResponse | None]:
        """owner/name, or GitHub's answer when the token cannot see it (404, as GitHub hides it)."""
        full_name = f"{request.path_params['owner']}/{request.path_params['repo']}"
        installation_id = installation_of(request)
        if installation_id is None:
            return full_name, JSONResponse({"message": "Bad credentials"}, 401)
        if full_name not in {r["full_name"] for r in state.installations.get(installation_id, [])}:
            return full_name, JSONResponse({"message": "Not Found"}, 404)
        return full_name, None

    async def repository(request: Request) -> JSONResponse:
        full_name, refused = reachable(request)
        if refused is not None:
            return refused
        installation_id = installation_of(request)
        repo = next(r for r in state.installations[installation_id or 0] if r["full_name"] == full_name)
        return JSONResponse(repo)

    async def branches(request: Request) -> JSONResponse:
        full_name, refused = reachable(request)
        return refused or _page(request, state.branches.get(full_name, []), state)

    def _pulls(full_name: str) -> list[dict[str, Any]]:
        return state.pulls.get(full_name, [])

    async def pulls(request: Request) -> JSONResponse:
        full_name, refused = reachable(request)
        if refused is not None:
            return refused
        wanted = request.query_params.get("state", "open")
        found = [p for p in _pulls(full_name) if wanted == "all" or p["state"] == wanted]
        if request.query_params.get("sort") == "updated":
            descending = request.query_params.get("direction", "desc") == "desc"
            found.sort(key=lambda p: p["updated_at"], reverse=descending)
        return _page(request, found, state)

    async def pull(request: Request) -> JSONResponse:
        full_name, refused = reachable(request)
        if refused is not None:
            return refused
        number = int(request.path_params["n"])
        found = next((p for p in _pulls(full_name) if p["number"] == number), None)
        if found is None:
            return JSONResponse({"message": "Not Found"}, 404)
        return JSONResponse({**found, "merged": found.get("merged_at") is not None})

    async def reviews(request: Request) -> JSONResponse:
        full_name, refused = reachable(request)
        return refused or _page(request, state.reviews.get((full_name, int(request.path_params["n"])), []), state)

    async def requested_reviewers(request: Request) -> JSONResponse:
        full_name, refused = reachable(request)
        if refused is not None:
            return refused
        number = int(request.path_params["n"])
        found = next((p for p in _pulls(full_name) if p["number"] == number), None)
        if found is None:
            return JSONResponse({"message": "Not Found"}, 404)
        teams = state.requested_teams.get((full_name, number), [])
        return JSONResponse({"users": found.get("requested_reviewers", []), "teams": teams})

    async def comments(request: Request) -> JSONResponse:
        installation_id = installation_of(request)
        user_id = state.accounts.user_of(_bearer(request))  # a user token: the comment is that person's
        if installation_id is None and user_id is None:
            return JSONResponse({"message": "Bad credentials"}, 401)
        owner, repo, number = (
            request.path_params["owner"],
            request.path_params["repo"],
            request.path_params["n"],
        )
        # a user token reaches the repositories of the App's installations the person can access
        reached = {
            r["full_name"]
            for i in state.accounts.installations_of.get(user_id or 0, [])
            for r in state.installations.get(i, [])
        }
        if user_id is not None and f"{owner}/{repo}" not in reached:
            return JSONResponse({"message": "Not Found"}, 404)
        if request.method == "GET":
            with state.lock:
                state.comment_listings += 1
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
            "user": (
                {"id": user_id, "login": state.accounts.people.get(user_id), "type": "User"}
                if user_id is not None
                else {"id": 77, "login": "iw-test-app[bot]", "type": "Bot"}
            ),
            "created_at": time.time(),
        }
        with state.lock:
            state.comments.append(comment)
            lost = state.fail_after_storing.pop(0) if state.fail_after_storing else None
        state.comment_started.set()
        if lost is not None:  # stored, but the answer says otherwise (a proxy's 502, say)
            return JSONResponse({"message": "injected failure after storing"}, lost)
        if state.comment_delay:
            await asyncio.sleep(state.comment_delay)
        return JSONResponse(comment, 201)

    return Starlette(
        routes=[
            Route("/app/installations/{id:int}/access_tokens", access_tokens, methods=["POST"]),
            Route("/app/installations/{id:int}", get_installation, methods=["GET"]),
            Route("/installation/repositories", installation_repositories, methods=["GET"]),
            Route("/repos/{owner}/{repo}/issues/{n:int}/comments", comments, methods=["GET", "POST"]),
            *account_routes(state.accounts),
            Route("/repos/{owner}/{repo}", repository, methods=["GET"]),
            Route("/repos/{owner}/{repo}/branches", branches, methods=["GET"]),
            Route("/repos/{owner}/{repo}/pulls", pulls, methods=["GET"]),
            Route("/repos/{owner}/{repo}/pulls/{n:int}", pull, methods=["GET"]),
            Route("/repos/{owner}/{repo}/pulls/{n:int}/reviews", reviews, methods=["GET"]),
            Route("/repos/{owner}/{repo}/pulls/{n:int}/requested_reviewers", requested_reviewers, methods=["GET"]),
        ]
    )
