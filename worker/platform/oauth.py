"""OAuth connect flow, generic over integrations that declare an `OAuthFlow`.

    GET /oauth/{type}/start?team_id=&user_id=&integration_id=&return_to=&install=
        (Authorization: Bearer IW_ADMIN_TOKEN; the platform's backend calls it; `install=true`
        asks for an install where a `user_id` would otherwise mean a user link: GitHub)
        -> {"authorize_url": ...}: send the user's browser there (a link to this service)
    GET /oauth/{type}/authorize?flow=
        the browser: claims the flow (first browser only), gets a cookie that binds it, and is
        sent on to the provider's consent page (with PKCE's S256 code challenge)
    GET /oauth/{type}/callback?code=&state=
        the provider sends the browser back; the flow must be this browser's (the cookie), not
        used and not expired; the integration's flow exchanges the code (with the PKCE
        verifier) and stores the tokens (encrypted); the flow is used up first and given back
        if that fails; the browser is redirected to `return_to` with ?status=connected|error.
        The flow gets the callback's whole query too (a GitHub App's setup redirect brings
        `installation_id` and `setup_action`, and no code). Without any `state` the callback
        is no flow of ours (a provider's own redirect): nothing is done, the browser goes to
        IW_PLATFORM_URL.

The flow link and the provider's `state` are signed with IW_SIGNING_KEY, bound to the type and
to one flow row (worker/platform/oauth_flows.py), and expire after 10 minutes; `return_to` must
live under IW_PLATFORM_URL (no open redirect).
"""

from __future__ import annotations

import secrets
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from worker.core import signing
from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.platform import oauth_flows
from worker.platform.http import error, json_response, require_bearer
from worker.platform.oauth_flows import FlowRefused
from worker.runtime.runtime import Runtime
from worker.sdk.declare import OAuthStart
from worker.sdk.errors import InstallRejected

STATE_TTL_SECONDS = 600


def _purpose(type_: str) -> str:
    return f"oauth:{type_}"


def _link_purpose(type_: str) -> str:
    return f"oauth-link:{type_}"


def _flow_id(key: str, purpose: str, token: str) -> str:
    flow_id = signing.verify(key, purpose, token).get("fid")
    if not isinstance(flow_id, str):
        raise signing.InvalidSignedToken("token is invalid")
    return flow_id


def _cookie(flow_id: str) -> str:
    return f"iw_oauth_{flow_id}"


def redirect_uri(runtime: Runtime, type_: str) -> str:
    return f"{runtime.settings.public_url.rstrip('/')}/oauth/{type_}/callback"


def _cookie_path(runtime: Runtime, type_: str) -> str:
    """Where the browser sends the flow's cookie back: the callback's path as the browser sees it
    (IW_PUBLIC_URL may serve this app under a prefix, behind a proxy)."""
    return f"{urlsplit(runtime.settings.public_url).path.rstrip('/')}/oauth/{type_}/"


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
        install = request.query_params.get("install", "false").lower()
        if install not in ("true", "false", "1", "0"):
            return error(400, "install must be true or false")
        who = OAuthStart(
            team_id=team_id,
            user_id=request.query_params.get("user_id"),
            integration_id=request.query_params.get("integration_id"),
            return_to=return_to,
            install=install in ("true", "1"),
        )
        flow_id = await oauth_flows.create(runtime.pool, runtime.secrets, type_, who, STATE_TTL_SECONDS)
        link = signing.sign(_signing_key(), _link_purpose(type_), {"fid": flow_id}, STATE_TTL_SECONDS)
        url = f"{runtime.settings.public_url.rstrip('/')}/oauth/{type_}/authorize?{urlencode({'flow': link})}"
        return json_response({"authorize_url": url, "expires_in": STATE_TTL_SECONDS})

    async def authorize(request: Request) -> Response:
        type_ = request.path_params["type"]
        integration = runtime.registry.get(type_)
        if integration is None or integration.oauth is None:
            return error(404, f"{type_!r} has no OAuth flow")
        try:
            flow_id = _flow_id(_signing_key(), _link_purpose(type_), request.query_params.get("flow", ""))
        except signing.InvalidSignedToken:
            return error(400, "invalid sign-in link")
        browser = secrets.token_urlsafe(32)
        try:
            flow = await oauth_flows.claim(runtime.pool, runtime.secrets, type_, flow_id, browser)
        except FlowRefused as exc:
            return error(400, str(exc))
        state = signing.sign(_signing_key(), _purpose(type_), {"fid": flow.id}, STATE_TTL_SECONDS)
        try:
            url = integration.oauth.authorize_url(
                runtime.receiver_context(type_),
                state=state,
                redirect_uri=redirect_uri(runtime, type_),
                start=flow.start,
                code_challenge=flow.code_challenge,
            )
        except InstallRejected as exc:  # the deployment lacks the provider app's credentials
            return error(503, redact(str(exc)))
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(
            _cookie(flow.id),
            browser,
            max_age=STATE_TTL_SECONDS,
            path=_cookie_path(runtime, type_),
            secure=runtime.settings.public_url.startswith("https://"),
            httponly=True,
            samesite="lax",  # sent on the provider's top-level redirect back, not on cross-site requests
        )
        return response

    async def callback(request: Request) -> Response:
        type_ = request.path_params["type"]
        integration = runtime.registry.get(type_)
        if integration is None or integration.oauth is None:
            return error(404, f"{type_!r} has no OAuth flow")
        state = request.query_params.get("state")
        if not state:
            # No flow of ours: the provider's own redirect (GitHub sends the browser to an App's
            # setup URL after a user changed an installation's repositories on github.com). Nothing
            # to do here (the provider's webhooks carry the change): back to the platform.
            log.info("oauth callback without a state: sent to the platform", type=type_)
            return RedirectResponse(_with_query(runtime.settings.platform_url, type=type_), status_code=303)
        try:
            flow_id = _flow_id(_signing_key(), _purpose(type_), state)
        except signing.InvalidSignedToken as exc:
            return error(400, f"invalid OAuth state: {exc}")
        browser = request.cookies.get(_cookie(flow_id))
        try:
            async with oauth_flows.consume(runtime.pool, runtime.secrets, type_, flow_id, browser) as flow:
                who = flow.start
                provider_error = request.query_params.get("error")
                if provider_error:
                    raise _Failed(who, provider_error)
                try:
                    integration_id = await integration.oauth.complete(
                        runtime.receiver_context(type_),
                        code=request.query_params.get("code") or None,
                        redirect_uri=redirect_uri(runtime, type_),
                        start=who,
                        code_verifier=flow.code_verifier,
                        query=dict(request.query_params),
                    )
                except InstallRejected as exc:
                    log.warning("oauth refused", type=type_, team_id=who.team_id, reason=redact(str(exc)))
                    raise _Failed(who, redact(str(exc))) from None
        except FlowRefused as exc:
            log.warning("oauth callback refused", type=type_, reason=str(exc))
            return error(400, str(exc))
        except _Failed as failed:  # the flow stays unused: this browser may try again
            return _finish(failed.who, status="error", reason=failed.reason)
        log.info(
            "oauth connected",
            type=type_,
            team_id=who.team_id,
            user_id=who.user_id,
            integration_id=integration_id,
        )
        response = _finish(who, status="connected", integration_id=integration_id or "", type=type_)
        response.delete_cookie(_cookie(flow_id), path=_cookie_path(runtime, type_))
        return response

    def _signing_key() -> str:
        return runtime.settings.signing_key.get_secret_value()

    return [
        Route("/oauth/{type}/start", start, methods=["GET"]),
        Route("/oauth/{type}/authorize", authorize, methods=["GET"]),
        Route("/oauth/{type}/callback", callback, methods=["GET"]),
    ]


class _Failed(Exception):
    """The provider or the integration refused: answered, and the flow is not used up."""

    def __init__(self, who: OAuthStart, reason: str) -> None:
        super().__init__(reason)
        self.who, self.reason = who, reason


def _finish(who: OAuthStart, **params: str) -> Response:
    if who.return_to:
        return RedirectResponse(_with_query(who.return_to, **params), status_code=303)
    status = 200 if params.get("status") == "connected" else 400
    return json_response(params, status)
