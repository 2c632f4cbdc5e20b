"""What can go wrong in integration code, and whether trying again can help.

Handlers raise `TransientError` (try again later, optionally after `retry_after` seconds) or
`PermanentError` (park it); `ActionRefused` answers an action's caller without parking anything.
HTTP answers are classified by `classify_response`: network errors, timeouts, 5xx and 429 are
transient, other 4xx permanent. Whatever else a handler raises is a bug: the runtime parks the
message with the exception and logs its traceback.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from worker.core.redact import redact

FailureKind = Literal["transient", "permanent"]


class IntegrationError(Exception):
    """Base of the errors integration code raises on purpose. The message must not hold secrets."""


class TransientError(IntegrationError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(IntegrationError):
    pass


class ActionRefused(PermanentError):
    """An action cannot do what it was asked (no such chat, a draft that does not exist...): the
    caller gets this answer (status `refused`, with per-field errors when given) and the command
    is done, not parked. Nothing may have been done at the provider when it is raised."""

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class ProviderError(PermanentError):
    """The provider refused the call for good (4xx). `status` and `body` say how."""

    def __init__(self, message: str, *, status: int, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class InstallRejected(Exception):
    """The live service refused the config (bad token, unreachable host): the message says why."""


class LinkNeedsReconnect(PermanentError):
    """A user's link cannot be used until the user connects the account again."""


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    reason: str
    retry_after: float | None = None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def http_reason(response: httpx.Response) -> str:
    """`METHOD url -> HTTP status: the provider's own words`, redacted, so whoever reads a parked
    message or a failed tool call learns why (GitHub's 422, Google's 400), not only that."""
    reason = f"{response.request.method} {response.request.url.copy_with(query=None)} -> HTTP {response.status_code}"
    said = provider_message(response)
    return redact(f"{reason}: {said}" if said else reason)


def provider_message(response: httpx.Response) -> str | None:
    """The explanation in an error body, in the shapes providers use: `message` (GitHub,
    Mattermost), `error.message` (Google), `error_description` / `error` (OAuth), `description`."""
    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    for said in (
        body.get("message"),
        error.get("message") if isinstance(error, dict) else None,
        body.get("error_description"),
        body.get("description"),
        error,
    ):
        if isinstance(said, str) and said.strip():
            return " ".join(said.split())[:300]
    return None


def classify_response(response: httpx.Response) -> Failure | None:
    """The generic HTTP rule: None for success, else transient (429, 408, 5xx) or permanent (4xx)."""
    status = response.status_code
    if status < 400:
        return None
    if status in (408, 425, 429) or status >= 500:
        return Failure("transient", http_reason(response), parse_retry_after(response.headers.get("retry-after")))
    return Failure("permanent", http_reason(response))


def validation_summary(exc: ValidationError) -> str:
    """`field: message; ...` for the first ten errors, without input values."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:10]:
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def field_errors(exc: ValidationError) -> dict[str, list[str]]:
    """Validation errors per field (dotted path), for HTTP and CLI answers. No input values."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        errors.setdefault(location, []).append(error["msg"])
    return errors
