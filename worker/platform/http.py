"""Small helpers shared by the HTTP routes: JSON answers, request bodies and bearer-token checks."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from worker.sdk.errors import field_errors

M = TypeVar("M", bound=BaseModel)


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


async def parse_body(request: Request, model: type[M]) -> M | Response:
    """The JSON body as `model`, else the 400 answer to send (not JSON; per-field errors)."""
    try:
        return model.model_validate(orjson.loads(await request.body()))
    except orjson.JSONDecodeError:
        return error(400, "body is not JSON")
    except ValidationError as exc:
        return error(400, "invalid request", fields=field_errors(exc))


Endpoint = Callable[[Request], Awaitable[Response]]


def bearer_only(expected: SecretStr | None, what: str, endpoint: Endpoint) -> Endpoint:
    """`endpoint` behind `require_bearer`: one check where the routes are built, not one per handler."""

    async def guarded(request: Request) -> Response:
        refused = require_bearer(request, expected, what)
        return refused if refused is not None else await endpoint(request)

    return guarded
