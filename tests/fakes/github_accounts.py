"""GitHub's web side, faked for the fake GitHub (tests/fakes/github.py): the App's
installations/new page, user OAuth (authorize, the token endpoint with PKCE and refresh tokens
that are spent on use, with the access token issued with them), `GET /user`,
`GET /user/installations` and revoking a person's authorization of the App or one token.

The pages answer as GitHub does after the person clicked: installations/new redirects to the
App's setup URL with `installation_id`, `setup_action=install` and the state (and, with
`code_on_install`, as for an App that requests user authorization during installation, a code
for the person `signed_in`, with no PKCE challenge: GitHub then ignores a verifier); the
authorize page redirects to the redirect URI with a code for the person `signed_in`, bound to the
PKCE challenge.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

CLIENT_ID = "Iv1.fakeclient0001"
CLIENT_SECRET = "fake-github-client-secret-0123456789"
APP_SLUG = "iw-test-app"
USER_TOKEN_TTL = 28800  # 8 hours, as GitHub's
REFRESH_TOKEN_TTL = 15897600  # 6 months


@dataclass
class _Code:
    github_id: int
    challenge: str  # "" when the authorization request had none: any verifier (or none) is accepted
    redirect_uri: str


@dataclass
class FakeGitHubAccounts:
    people: dict[int, str] = field(default_factory=dict)  # GitHub user id -> login
    signed_in: int | None = None  # who clicks "Authorize" on the authorize page
    setup_url: str = ""  # the App's setup URL (where installations/new sends the browser)
    next_installation: int | None = None  # what installations/new installs
    code_on_install: bool = False  # installations/new also sends a code (user authorization during install)
    installations_of: dict[int, list[int]] = field(default_factory=dict)  # user id -> installations they access
    codes: dict[str, _Code] = field(default_factory=dict)
    access: dict[str, tuple[int, float]] = field(default_factory=dict)  # token -> (user id, expires at)
    refresh: dict[str, int] = field(default_factory=dict)  # refresh token -> user id
    pairs: dict[str, str] = field(default_factory=dict)  # refresh token -> the access token issued with it
    exchanges: list[dict[str, str]] = field(default_factory=list)  # token endpoint requests (form)
    revoked: list[int] = field(default_factory=list)  # people whose authorization was revoked
    revoked_tokens: list[str] = field(default_factory=list)  # access tokens revoked one by one
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.people.clear()
            self.signed_in = None
            self.setup_url = ""
            self.next_installation = None
            self.code_on_install = False
            self.installations_of.clear()
            self.codes.clear()
            self.access.clear()
            self.refresh.clear()
            self.pairs.clear()
            self.exchanges.clear()
            self.revoked.clear()
            self.revoked_tokens.clear()

    def grant(self, github_id: int, *, expires_in: float = USER_TOKEN_TTL) -> tuple[str, str]:
        """A user token and its refresh token, as a finished consent gives."""
        access, refresh = "ghu_" + secrets.token_hex(18), "ghr_" + secrets.token_hex(30)
        with self.lock:
            self.access[access] = (github_id, time.time() + expires_in)
            self.refresh[refresh] = github_id
            self.pairs[refresh] = access
        return access, refresh

    def user_of(self, token: str | None) -> int | None:
        """The user a token is of, while it has not expired or been spent."""
        found = self.access.get(token or "")
        if found is None or found[1] <= time.time():
            return None
        return found[0]


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else None


def account_routes(accounts: FakeGitHubAccounts) -> list[BaseRoute]:
    async def installations_new(request: Request) -> Response:
        if request.path_params["slug"] != APP_SLUG:
            return PlainTextResponse("Not Found", 404)
        query = {"installation_id": str(accounts.next_installation), "setup_action": "install"}
        if accounts.code_on_install and accounts.signed_in is not None:
            code = secrets.token_hex(10)
            with accounts.lock:
                accounts.codes[code] = _Code(accounts.signed_in, "", accounts.setup_url)
            query["code"] = code
        if state := request.query_params.get("state"):
            query["state"] = state
        return RedirectResponse(f"{accounts.setup_url}?{urlencode(query)}", 302)

    async def authorize(request: Request) -> Response:
        params = request.query_params
        if params.get("client_id") != CLIENT_ID:
            return PlainTextResponse("unknown client", 404)
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return PlainTextResponse("a PKCE challenge (S256) is expected", 400)
        if accounts.signed_in is None:
            return PlainTextResponse("nobody signed in", 400)
        code = secrets.token_hex(10)
        redirect_uri = params.get("redirect_uri", "")
        with accounts.lock:
            accounts.codes[code] = _Code(accounts.signed_in, params["code_challenge"], redirect_uri)
        query = urlencode({"code": code, "state": params.get("state", "")})
        return RedirectResponse(f"{redirect_uri}?{query}", 302)

    def tokens_for(github_id: int) -> JSONResponse:
        access, refresh = accounts.grant(github_id)
        return JSONResponse(
            {
                "access_token": access,
                "expires_in": USER_TOKEN_TTL,
                "refresh_token": refresh,
                "refresh_token_expires_in": REFRESH_TOKEN_TTL,
                "scope": "",
                "token_type": "bearer",
            }
        )

    async def access_token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        with accounts.lock:
            accounts.exchanges.append(form)
        if request.headers.get("accept") != "application/json":
            return PlainTextResponse("error=unsupported_accept", 200)  # GitHub answers form-encoded then
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return JSONResponse({"error": "incorrect_client_credentials", "error_description": "wrong client"})
        if form.get("grant_type") == "refresh_token":
            with accounts.lock:
                github_id = accounts.refresh.pop(form.get("refresh_token", ""), None)
                spent = accounts.pairs.pop(form.get("refresh_token", ""), None)
                if spent is not None:  # the access token issued with it is spent too; the user's others are not
                    accounts.access.pop(spent, None)
            if github_id is None:
                return JSONResponse({"error": "bad_refresh_token", "error_description": "The refresh token is bad"})
            return tokens_for(github_id)
        with accounts.lock:
            code = accounts.codes.pop(form.get("code", ""), None)
        if (
            code is None
            or code.redirect_uri != form.get("redirect_uri")
            or (code.challenge and _challenge(form.get("code_verifier", "")) != code.challenge)
        ):
            return JSONResponse(
                {"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."}
            )
        return tokens_for(code.github_id)

    async def user(request: Request) -> JSONResponse:
        github_id = accounts.user_of(_bearer(request))
        if github_id is None:
            return JSONResponse({"message": "Bad credentials"}, 401)
        return JSONResponse({"id": github_id, "login": accounts.people[github_id], "type": "User"})

    async def user_installations(request: Request) -> JSONResponse:
        """The App's installations the token's user can access, a page (`per_page`, at most 100,
        `page`) at a time with a `Link` header naming the next page."""
        github_id = accounts.user_of(_bearer(request))
        if github_id is None:
            return JSONResponse({"message": "Bad credentials"}, 401)
        ids = accounts.installations_of.get(github_id, [])
        per_page = min(int(request.query_params.get("per_page", "30")), 100)
        page = int(request.query_params.get("page", "1"))
        headers = {}
        if page * per_page < len(ids):
            headers["Link"] = f'<{request.url.include_query_params(page=page + 1)}>; rel="next"'
        chunk = [{"id": i, "app_slug": APP_SLUG} for i in ids[(page - 1) * per_page : page * per_page]]
        return JSONResponse({"total_count": len(ids), "installations": chunk}, headers=headers)

    def client_ok(request: Request) -> bool:
        try:
            basic = base64.b64decode(request.headers.get("authorization", "")[6:]).decode()
        except (binascii.Error, UnicodeDecodeError):
            basic = ""
        return request.path_params["client_id"] == CLIENT_ID and basic == f"{CLIENT_ID}:{CLIENT_SECRET}"

    async def revoke_token(request: Request) -> Response:
        """One access token revoked; the person's authorization and other tokens stay."""
        token = (await request.json()).get("access_token")
        if not client_ok(request) or accounts.user_of(token) is None:
            return JSONResponse({"message": "Not Found"}, 404)
        with accounts.lock:
            del accounts.access[token]
            accounts.revoked_tokens.append(token)
        return Response(status_code=204)

    async def revoke_grant(request: Request) -> Response:
        if not client_ok(request):
            return JSONResponse({"message": "Not Found"}, 404)
        github_id = accounts.user_of((await request.json()).get("access_token"))
        if github_id is None:
            return JSONResponse({"message": "Not Found"}, 404)
        with accounts.lock:  # the whole authorization goes: every token of this person
            for token in [t for t, (who, _) in accounts.access.items() if who == github_id]:
                del accounts.access[token]
            for token in [t for t, who in accounts.refresh.items() if who == github_id]:
                del accounts.refresh[token]
                accounts.pairs.pop(token, None)
            accounts.revoked.append(github_id)
        return Response(status_code=204)

    return [
        Route("/apps/{slug}/installations/new", installations_new, methods=["GET"]),
        Route("/applications/{client_id}/grant", revoke_grant, methods=["DELETE"]),
        Route("/applications/{client_id}/token", revoke_token, methods=["DELETE"]),
        Route("/login/oauth/authorize", authorize, methods=["GET"]),
        Route("/login/oauth/access_token", access_token, methods=["POST"]),
        Route("/user", user, methods=["GET"]),
        Route("/user/installations", user_installations, methods=["GET"]),
    ]
