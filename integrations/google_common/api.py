"""Calling a Google API as a linked user: the user's own token for each call (never a shared
client), refreshed by the runtime ahead of expiry and once after a 401; Google's error rules
(PROVIDERS.md §8): 429, 5xx and 403 rate-limit reasons are transient, other 4xx permanent."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import httpx

from worker.sdk import Context, Failure, TokenRefresher, call, classify_response, parse_retry_after

RATE_LIMIT_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "usageLimits", "RESOURCE_EXHAUSTED"}
)
DEFAULT_RATE_LIMIT_WAIT = 30.0


def error_reasons(response: httpx.Response) -> set[str]:
    """Google's error reasons: `error.errors[].reason` and `error.status`."""
    try:
        body = response.json()
    except ValueError:
        return set()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return set()
    reasons = {str(e.get("reason")) for e in error.get("errors") or [] if isinstance(e, dict) and e.get("reason")}
    if error.get("status"):
        reasons.add(str(error["status"]))
    return reasons


def classify(response: httpx.Response) -> Failure | None:
    if response.status_code == 403:
        reasons = error_reasons(response) & RATE_LIMIT_REASONS
        if reasons:
            wait = parse_retry_after(response.headers.get("retry-after")) or DEFAULT_RATE_LIMIT_WAIT
            return Failure("transient", f"Google rate limit ({', '.join(sorted(reasons))}, HTTP 403)", wait)
    return classify_response(response)


async def google_call(
    ctx: Context,
    link_id: str,
    refresher: TokenRefresher,
    method: str,
    url: str,
    *,
    ok_statuses: Container[int] = (),
    **kwargs: Any,
) -> httpx.Response:
    """One API call as the link's user (ProviderError / TransientError on failure)."""
    extra_headers = kwargs.pop("headers", None) or {}

    async def once(token: str) -> httpx.Response:
        return await call(
            ctx.http,
            method,
            url,
            headers={**extra_headers, "Authorization": f"Bearer {token}"},
            classify=classify,
            ok_statuses=ok_statuses,
            **kwargs,
        )

    return await ctx.tokens.call(link_id, refresher, once)
