"""Small helpers shared by the HTTP routes: JSON answers and bearer-token checks."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error(status: int, message: str, **extra: Any) -> Response:
    return json_response({"error": message, **extra}, status)


def bearer_ok(request: Request, expected: SecretStr | None) -> bool:
    """True when the request carries `Authorization: Bearer <expected>` (constant-time compare)."""
    if expected is None:
        return False
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), expected.get_secret_value().encode())


def require_bearer(request: Request, expected: SecretStr | None, what: str) -> Response | None:
    """None when authorised, else the 401/403 answer to send."""
    if expected is None:
        return error(403, f"the {what} API is disabled: set its token to enable it")
    if not bearer_ok(request, expected):
        return error(401, "missing or wrong bearer token")
    return None
