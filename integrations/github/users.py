"""GitHub user-to-server tokens: a person's own GitHub account, linked to their platform user.

The token endpoint (`{IW_GITHUB_WEB_URL}/login/oauth/access_token`, JSON answers) exchanges a
code (with the PKCE verifier) and refreshes: an App's user tokens last 8 hours and come with a
refresh token good for 6 months; a refresh spends both the old access and refresh token (the
runtime saves the new pair in the refresh's transaction). GitHub answers refusals with HTTP 200
and an `error` field; `bad_refresh_token` is final (the link then needs reconnecting).

Calls as a user go through `ctx.tokens` (always a valid token, refreshed by one caller at a
time across every process; a 401 refreshes once and tries again). Unlinking revokes the
person's authorization of the App at GitHub, or only the link's token while the same account has
another team's link (`on_unlink`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from integrations.github.client import API_VERSION, PER_PAGE, classify, headers, next_page
from integrations.github.config import GithubSettings
from integrations.github.payloads import User
from worker.sdk import Context, InvalidGrant, Link, LinkNeedsReconnect, PermanentError, TokenGrant, call, redact

FINAL_ERRORS = ("bad_refresh_token", "bad_verification_code")


def credentials(settings: GithubSettings) -> tuple[str, str] | None:
    if not settings.client_id or settings.client_secret is None:
        return None
    return settings.client_id, settings.client_secret.get_secret_value()


def _grant(body: dict[str, Any]) -> TokenGrant:
    if not body.get("access_token"):
        raise PermanentError("GitHub's token endpoint answered without an access token")
    return TokenGrant(
        access_token=str(body["access_token"]),
        expires_in=float(body["expires_in"]) if body.get("expires_in") else None,
        refresh_token=str(body["refresh_token"]) if body.get("refresh_token") else None,
        scope=str(body["scope"]) if body.get("scope") else None,
    )


async def token_request(http: httpx.AsyncClient, settings: GithubSettings, form: dict[str, str]) -> TokenGrant:
    """POST the token endpoint with the App's client credentials; InvalidGrant when GitHub says
    the code or refresh token is no good, PermanentError for other refusals."""
    pair = credentials(settings)
    if pair is None:
        raise PermanentError("GitHub user OAuth is not configured (IW_GITHUB_CLIENT_ID, IW_GITHUB_CLIENT_SECRET)")
    response = await call(
        http,
        "POST",
        f"{settings.web_url.rstrip('/')}/login/oauth/access_token",
        data={**form, "client_id": pair[0], "client_secret": pair[1]},
        headers={"Accept": "application/json"},
        classify=classify,
        ok_statuses=(400, 401),
    )
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise PermanentError(f"GitHub's token endpoint answered HTTP {response.status_code} without JSON")
    error = body.get("error")
    if error or response.status_code in (400, 401):
        reason = redact(f"{error or response.status_code}: {body.get('error_description') or ''}".strip(" :"))
        if error in FINAL_ERRORS:
            raise InvalidGrant(reason)
        raise PermanentError(f"GitHub's token endpoint refused the request ({reason})")
    return _grant(body)


@dataclass(frozen=True)
class GithubRefresher:
    """The runtime's `TokenRefresher` for GitHub user tokens; holds settings only."""

    settings: GithubSettings

    async def refresh(self, http: httpx.AsyncClient, refresh_token: str) -> TokenGrant:
        return await token_request(http, self.settings, {"grant_type": "refresh_token", "refresh_token": refresh_token})


async def whoami(http: httpx.AsyncClient, settings: GithubSettings, token: str) -> User:
    """`GET /user` with a user token: the account's numeric id and login."""
    response = await call(http, "GET", f"{settings.api_url}/user", headers=headers(token), classify=classify)
    return User.model_validate(response.json())


async def can_access_installation(
    http: httpx.AsyncClient, settings: GithubSettings, token: str, installation_id: int
) -> bool:
    """Whether `installation_id` is among the installations of this App the token's user can
    access (`GET /user/installations`, every page, `PER_PAGE` a page, following the `Link`
    header): GitHub's proof that the person at the setup redirect holds that installation."""
    next_path: str | None = "/user/installations"
    query: dict[str, Any] | None = {"per_page": PER_PAGE}
    while next_path is not None:
        response = await call(
            http, "GET", f"{settings.api_url}{next_path}", params=query, headers=headers(token), classify=classify
        )
        body = response.json()
        page = body.get("installations") if isinstance(body, dict) else None
        if not isinstance(page, list):
            raise PermanentError("GitHub answered /user/installations without a list of installations")
        if any(isinstance(item, dict) and item.get("id") == installation_id for item in page):
            return True
        next_path, query = next_page(response, settings.api_url), None  # the link carries the query
    return False


async def user_api(ctx: Context, link_id: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """An API call as the linked user (their token, refreshed when near expiry or after a 401)."""
    settings = ctx.settings_as(GithubSettings)

    async def send(token: str) -> httpx.Response:
        return await call(
            ctx.http, method, f"{settings.api_url}{path}", headers=headers(token), classify=classify, **kwargs
        )

    return await ctx.tokens.call(link_id, GithubRefresher(settings), send)


async def platform_users(ctx: Context, people: Iterable[User | None]) -> dict[int, str]:
    """GitHub user id -> platform user id, for the people who linked their GitHub account to this
    integration: looked up by GitHub's numeric user id (one query), never by login, so someone who
    renamed their account still maps, and a login given up and taken by someone else maps to
    nobody. A link whose token needs reconnecting still says who the person is."""
    known = {user.id for user in people if user is not None}
    if not known:
        return {}
    links = await ctx.links.of_accounts(sorted(str(github_id) for github_id in known))
    return {int(link.external_user_id): link.user_id for link in links}


async def on_unlink(ctx: Context, link: Link) -> bool:
    """Unlinking: revoke at GitHub what this link holds, the client credentials as HTTP Basic and
    the link's token in the body. When the same GitHub account has no other active link (another
    team's), the person's whole authorization of the App goes (`DELETE
    /applications/{client_id}/grant`: every token of theirs for the App stops working); else only
    this link's token (`DELETE /applications/{client_id}/token`), as the grant is also the other
    link's. False when there was nothing left to revoke (the link needs reconnecting, or GitHub
    no longer knows the token)."""
    settings = ctx.settings_as(GithubSettings)
    pair = credentials(settings)
    if not link.active or pair is None:
        return False
    try:
        token = await ctx.tokens.access_token(link.id, GithubRefresher(settings))
    except LinkNeedsReconnect:
        return False
    shared = any(other.id != link.id for other in await ctx.links.across_teams(external_user_id=link.external_user_id))
    response = await call(
        ctx.http,
        "DELETE",
        f"{settings.api_url}/applications/{pair[0]}/{'token' if shared else 'grant'}",
        json={"access_token": token},
        auth=httpx.BasicAuth(*pair),
        headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION},
        classify=classify,
        ok_statuses=(404, 422),
    )
    if response.status_code in (404, 422):
        ctx.log.info("GitHub no longer knew the link's token: nothing to revoke", link_id=link.id)
        return False
    if shared:
        ctx.log.info("the link's token revoked at GitHub; the account's other links keep theirs", link_id=link.id)
    else:
        ctx.log.info("authorization revoked at GitHub", link_id=link.id)
    return True
