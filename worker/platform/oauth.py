"""OAuth connect flow, generic over integrations that declare an `OAuthFlow`.

    GET /oauth/{type}/start?team_id=&user_id=&integration_id=&return_to=
        (Authorization: Bearer IW_ADMIN_TOKEN; the platform's backend calls it)
        -> {"authorize_url": ...}: send the user's browser there.
    GET /oauth/{type}/callback?code=&state=
        the provider sends the browser back; the signed `state` says for whom; the
        integration's flow exchanges the code and stores the tokens (encrypted);
        the browser is redirected to `return_to` with ?status=connected|error.

`state` is signed with IW_SIGNING_KEY, bound to the type, and expires after
10 minutes; `return_to` must live under IW_PLATFORM_URL (no open redirect).
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from worker.core import signing
from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.platform.http import error, json_response, require_bearer
from worker.runtime.runtime import Runtime
from worker.sdk.declare import OAuthStart
from worker.sdk.errors import InstallRejected

STATE_TTL_SECONDS = 600


def _purpose(type_: str) -> str:
    return f"oauth:{type_}"


def redirect_uri(runtime: Runtime, type_: str) -> str:
    return f"{runtime.settings.public_url.rstrip('/')}/oauth/{type_}/callback"


def _allowed_return(runtime: Runtime, return_to: str | None) -> bool:
    if not return_to:
        return True
    base = runtime.settings.platform_url.rstrip("/")
    return return_to == base or return_to.startswith(base + "/") or return_to.startswith(base + "?")


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def oauth_routes(runtime: Runtime) -> list[BaseRoute]:
    log = get_logger(component="oauth")

    async def start(request: Request) -> Response:
        type_ = request.path_params["type"]
        integration = runtime.registry.get(type_)
        if integration is None or integration.oauth is None:
            return error(404, f"{type_!r} has no OAuth flow")
        refused = require_bearer(request, runtime.settings.admin_token, "admin")
        if refused is not None:
            return refused
        team_id = request.query_params.get("team_id")
        if not team_id:
            return error(400, "team_id is required")
        return_to = request.query_params.get("return_to")
        if not _allowed_return(runtime, return_to):
            return error(400, "return_to must be under the platform URL (IW_PLATFORM_URL)")
        who = OAuthStart(
            team_id=team_id,
            user_id=request.query_params.get("user_id"),
            integration_id=request.query_params.get("integration_id"),
            return_to=return_to,
        )
        state = signing.sign(
            runtime.settings.signing_key.get_secret_value(),
            _purpose(type_),
            {"team": who.team_id, "user": who.user_id, "iid": who.integration_id, "rt": who.return_to},
            STATE_TTL_SECONDS,
        )
        try:
            url = integration.oauth.authorize_url(
                runtime.receiver_context(type_), state=state, redirect_uri=redirect_uri(runtime, type_), start=who
            )
        except InstallRejected as exc:  # the deployment lacks the provider app's credentials
            return error(503, redact(str(exc)))
        return json_response({"authorize_url": url, "expires_in": STATE_TTL_SECONDS})

    async def callback(request: Request) -> Response:
        type_ = request.path_params["type"]
        integration = runtime.registry.get(type_)
        if integration is None or integration.oauth is None:
            return error(404, f"{type_!r} has no OAuth flow")
        try:
            claims = signing.verify(
                runtime.settings.signing_key.get_secret_value(),
                _purpose(type_),
                request.query_params.get("state", ""),
            )
        except signing.InvalidSignedToken as exc:
            return error(400, f"invalid OAuth state: {exc}")
        who = OAuthStart(
            team_id=claims["team"],
            user_id=claims.get("user"),
            integration_id=claims.get("iid"),
            return_to=claims.get("rt"),
        )
        provider_error = request.query_params.get("error")
        code = request.query_params.get("code")
        if provider_error or not code:
            return _finish(who, status="error", reason=provider_error or "no code returned")
        try:
            integration_id = await integration.oauth.complete(
                runtime.receiver_context(type_),
                code=code,
                redirect_uri=redirect_uri(runtime, type_),
                start=who,
            )
        except InstallRejected as exc:
            log.warning("oauth refused", type=type_, team_id=who.team_id, reason=redact(str(exc)))
            return _finish(who, status="error", reason=redact(str(exc)))
        log.info(
            "oauth connected",
            type=type_,
            team_id=who.team_id,
            user_id=who.user_id,
            integration_id=integration_id,
        )
        return _finish(who, status="connected", integration_id=integration_id or "", type=type_)

    return [
        Route("/oauth/{type}/start", start, methods=["GET"]),
        Route("/oauth/{type}/callback", callback, methods=["GET"]),
    ]


def _finish(who: OAuthStart, **params: str) -> Response:
    if who.return_to:
        return RedirectResponse(_with_query(who.return_to, **params), status_code=303)
    status = 200 if params.get("status") == "connected" else 400
    return json_response(params, status)
