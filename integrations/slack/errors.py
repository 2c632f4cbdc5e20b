"""Slack's error rules (PROVIDERS §8). App errors come back as HTTP 200 `{"ok": false, "error": ...}`:
`ratelimited`, `internal_error`, `fatal_error`, `service_unavailable`, `request_timeout` are
transient; every other error (`channel_not_found`, `not_in_channel`, `invalid_auth`,
`token_revoked`, `missing_scope`, `msg_too_long`, ...) is permanent. HTTP 429 (with Retry-After)
and 5xx are transient, other 4xx permanent.
"""

from __future__ import annotations

from typing import Any

import httpx

from worker.sdk import Failure, classify_response, parse_retry_after

TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


def _method(response: httpx.Response) -> str:
    return response.request.url.path.rsplit("/", 1)[-1]


def classify(response: httpx.Response) -> Failure | None:
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if response.status_code == 429:
        return Failure("transient", f"Slack {_method(response)}: rate limited (HTTP 429)", retry_after or 1.0)
    failure = classify_response(response)
    if failure is not None:
        return failure
    try:
        body = response.json()
    except ValueError:
        return Failure("transient", f"Slack {_method(response)}: the answer is not JSON")
    if not isinstance(body, dict) or body.get("ok") is not False:
        return None
    error = str(body.get("error") or "unknown_error")
    if error in TRANSIENT_ERRORS:
        return Failure("transient", f"Slack {_method(response)}: {error}", retry_after)
    return Failure("permanent", f"Slack {_method(response)}: {error}")


def error_of(body: Any) -> str | None:
    """The `error` of a Slack answer (a ProviderError's body), if any."""
    return str(body.get("error")) if isinstance(body, dict) and body.get("error") else None
