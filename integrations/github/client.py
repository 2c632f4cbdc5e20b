"""GitHub's REST API: authenticated as the App or as an installation, with GitHub's rate-limit rules.

App JWT: RS256 with the App's private key, `iat` 60 s in the past (clock drift),
`exp` 9 minutes ahead, `iss` the App id. Installation token: exchanged for the
JWT, valid 1 hour, cached per installation until 5 minutes before it expires,
minted once even when many handlers ask at the same time.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import httpx
import jwt

from integrations.github.config import GithubSettings
from worker.sdk import Context, Failure, PermanentError, ProviderError, call, classify_response, parse_retry_after

API_VERSION = "2022-11-28"
TOKEN_MARGIN_SECONDS = 300
PER_PAGE = 100  # GitHub's largest page
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


def classify(response: httpx.Response) -> Failure | None:
    """GitHub's rules (PROVIDERS.md §2.1, §8): a 403 or 429 that is a rate limit is transient."""
    if response.status_code in (403, 429):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if response.headers.get("x-ratelimit-remaining") == "0":
            reset = response.headers.get("x-ratelimit-reset", "")
            wait = max(0.0, float(reset) - time.time()) if reset.isdigit() else 60.0
            return Failure(
                "transient", f"GitHub rate limit exhausted (HTTP {response.status_code})", retry_after or wait
            )
        if retry_after is not None or "secondary rate limit" in response.text.lower():
            return Failure(
                "transient", f"GitHub secondary rate limit (HTTP {response.status_code})", retry_after or 60.0
            )
    return classify_response(response)


def headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
    }


def app_jwt(settings: GithubSettings, *, now: float | None = None) -> str:
    pem = settings.pem()
    if not settings.app_id or not pem:
        raise PermanentError("GitHub App credentials are not configured (IW_GITHUB_APP_ID, IW_GITHUB_PRIVATE_KEY)")
    issued = int(now if now is not None else time.time())
    return jwt.encode({"iat": issued - 60, "exp": issued + 540, "iss": settings.app_id}, pem, algorithm="RS256")


async def installation_token(ctx: Context, installation_id: int) -> str:
    settings = ctx.settings_as(GithubSettings)

    async def mint() -> tuple[str, float]:
        response = await call(
            ctx.http,
            "POST",
            f"{settings.api_url}/app/installations/{installation_id}/access_tokens",
            headers=headers(app_jwt(settings)),
            classify=classify,
        )
        body = response.json()
        expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
        return str(body["token"]), expires_at - time.time() - TOKEN_MARGIN_SECONDS

    token: str = await ctx.cache.get_or_compute(f"installation-token:{installation_id}", mint)
    return token


async def api(ctx: Context, installation_id: int, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """An API call as the installation; a 401 drops the cached token and tries once more."""
    settings = ctx.settings_as(GithubSettings)
    for attempt in (1, 2):
        token = await installation_token(ctx, installation_id)
        try:
            return await call(
                ctx.http,
                method,
                f"{settings.api_url}{path}",
                headers=headers(token),
                classify=classify,
                **kwargs,
            )
        except ProviderError as exc:
            if exc.status != 401 or attempt == 2:
                raise
            ctx.cache.delete(f"installation-token:{installation_id}")
    raise AssertionError("unreachable")  # pragma: no cover


async def app_api(ctx: Context, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """An API call as the App itself (JWT)."""
    settings = ctx.settings_as(GithubSettings)
    return await call(
        ctx.http,
        method,
        f"{settings.api_url}{path}",
        headers=headers(app_jwt(settings)),
        classify=classify,
        **kwargs,
    )


def next_page(response: httpx.Response, api_url: str) -> str | None:
    """The path (with its query) of the next page named by the `Link` header, if any. A link to
    another host is not followed: the installation token goes only to the API."""
    match = _NEXT_LINK.search(response.headers.get("link", ""))
    if match is None:
        return None
    url = match.group(1)
    base = api_url.rstrip("/")
    if not url.startswith(base + "/"):
        raise PermanentError("GitHub's Link header points outside its API; not following it")
    return url[len(base) :]


async def paginate(
    ctx: Context,
    installation_id: int,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    key: str | None = None,
    limit: int | None = None,
) -> list[Any]:
    """Every item of a listing as the installation, `PER_PAGE` a page, following the `Link`
    header's `next` (GitHub's pagination). `key`: the field holding the items when the page is an
    object (`repositories` of /installation/repositories). `limit`: stop after that many."""
    settings = ctx.settings_as(GithubSettings)
    items: list[Any] = []
    next_path: str | None = path
    query: dict[str, Any] | None = {**(params or {}), "per_page": PER_PAGE}
    while next_path is not None:
        response = await api(ctx, installation_id, "GET", next_path, params=query)
        body = response.json()
        page = body.get(key, []) if key is not None and isinstance(body, dict) else body
        if not isinstance(page, list):
            raise PermanentError(f"GitHub answered {path} with something other than a list")
        items.extend(page)
        if limit is not None and len(items) >= limit:
            return items[:limit]
        next_path, query = next_page(response, settings.api_url), None  # the link carries the query
    return items
