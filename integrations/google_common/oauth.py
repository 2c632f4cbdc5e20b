"""Google's OAuth 2.0 for a user link (PROVIDERS.md §2.5): the authorize URL with
`access_type=offline` and `prompt=consent` (so Google always returns a refresh token), the
code exchange, the refresh (`grant_type=refresh_token`; `invalid_grant` is final), and the
account's address from the userinfo endpoint.

The runtime's generic routes (`GET /oauth/{type}/start|callback`, worker/oauth.py) carry the
signed state (team, user, integration); `GoogleOAuthFlow.complete` stores the link through
`ctx.tokens.save` (tokens encrypted) and then runs the integration's `after_link`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from integrations.google_common.settings import GoogleSettings
from worker.context import IngressContext
from worker.errors import IntegrationError, PermanentError, classify_response
from worker.install import InstallError
from worker.integration import InstallRejected, OAuthStart
from worker.outbound import call
from worker.redact import redact
from worker.tokens import InvalidGrant, TokenGrant

IDENTITY_SCOPES = ("openid", "email")


def _token_error(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "unknown_error", ""
    if not isinstance(body, dict):
        return "unknown_error", ""
    return str(body.get("error") or "unknown_error"), str(body.get("error_description") or "")


def _grant(body: dict[str, Any]) -> TokenGrant:
    if not body.get("access_token"):
        raise PermanentError("Google's token endpoint answered without an access token")
    return TokenGrant(
        access_token=str(body["access_token"]),
        expires_in=float(body["expires_in"]) if body.get("expires_in") is not None else None,
        refresh_token=str(body["refresh_token"]) if body.get("refresh_token") else None,
        scope=str(body["scope"]) if body.get("scope") else None,
    )


@dataclass(frozen=True)
class GoogleRefresher:
    """The runtime's `TokenRefresher` for Google; holds settings only, no user's state."""

    settings: GoogleSettings

    async def refresh(self, http: httpx.AsyncClient, refresh_token: str) -> TokenGrant:
        return await _token_request(
            http, self.settings, {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )


async def _token_request(http: httpx.AsyncClient, settings: GoogleSettings, form: dict[str, str]) -> TokenGrant:
    if not settings.oauth_configured or settings.client_secret is None:
        raise PermanentError("the Google OAuth client is not configured (CLIENT_ID and CLIENT_SECRET settings)")
    response = await call(
        http,
        "POST",
        settings.token_url,
        data={
            **form,
            "client_id": settings.client_id or "",
            "client_secret": settings.client_secret.get_secret_value(),
        },
        headers={"Accept": "application/json"},
        classify=classify_response,
        ok_statuses=(400, 401),
    )
    if response.status_code in (400, 401):
        error, description = _token_error(response)
        if error == "invalid_grant":
            raise InvalidGrant(redact(f"invalid_grant: {description}" if description else "invalid_grant"))
        raise PermanentError(redact(f"Google's token endpoint refused the request: {error} {description}".strip()))
    return _grant(response.json())


AfterLink = Callable[[IngressContext, str, str, GoogleSettings], Awaitable[None]]


@dataclass(frozen=True)
class GoogleOAuthFlow:
    """`OAuthFlow` of a Google integration: its scopes, its settings model, the link's initial
    config, and what to do once a user is linked (start a Gmail watch, a Calendar channel)."""

    settings_model: type[GoogleSettings]
    scopes: Sequence[str]
    link_config: dict[str, Any] = field(default_factory=dict)
    after_link: AfterLink | None = None

    def authorize_url(self, ctx: IngressContext, *, state: str, redirect_uri: str, start: OAuthStart) -> str:
        settings = ctx.settings_as(self.settings_model)
        if not settings.client_id:
            raise InstallRejected(f"{ctx.type}: the Google OAuth client is not configured (CLIENT_ID setting)")
        query = {
            "client_id": settings.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join((*IDENTITY_SCOPES, *self.scopes)),
            "state": state,
            "access_type": "offline",
            "prompt": "consent",
            "include_granted_scopes": "false",
        }
        return f"{settings.auth_url}?{urlencode(query)}"

    async def complete(self, ctx: IngressContext, *, code: str, redirect_uri: str, start: OAuthStart) -> str | None:
        if not start.user_id:
            raise InstallRejected("a Google account is linked to a platform user: start the flow with user_id")
        settings = ctx.settings_as(self.settings_model)
        try:
            grant = await _token_request(
                ctx.http,
                settings,
                {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
            )
            missing = sorted(set(self.scopes) - set((grant.scope or "").split()))
            if grant.scope is not None and missing:
                raise InstallRejected(f"Google did not grant every permission needed: {', '.join(missing)}")
            email, name = await _identity(ctx.http, settings, grant.access_token)
        except InvalidGrant as exc:
            raise InstallRejected(f"Google refused the authorization code ({exc})") from None
        except IntegrationError as exc:
            raise InstallRejected(f"Google sign-in failed: {redact(str(exc))}") from None
        integration_id = await self._integration(ctx, start)
        existing = await ctx.fetchrow(
            "SELECT refresh_token IS NOT NULL AS has_refresh FROM integration_user_link"
            " WHERE integration_id = $1 AND external_user_id = $2",
            integration_id,
            email,
        )
        if grant.refresh_token is None and not (existing and existing["has_refresh"]):
            raise InstallRejected(
                "Google returned no refresh token: remove the app's access in the Google account settings"
                " and connect again"
            )
        link_id = await ctx.tokens.save(
            team_id=start.team_id,
            integration_id=integration_id,
            integration_type=ctx.type,
            user_id=start.user_id,
            external_user_id=email,
            external_user_name=name,
            grant=grant,
            config={**self.link_config, "scopes": sorted((grant.scope or "").split())},
        )
        if self.after_link is not None:
            try:
                await self.after_link(ctx, integration_id, link_id, settings)
            except Exception as exc:  # the schedule will catch up; the link itself is stored
                ctx.log.warning("after-link step failed; the schedule will retry it", error=redact(str(exc)))
        return integration_id

    async def _integration(self, ctx: IngressContext, start: OAuthStart) -> str:
        if start.integration_id:
            record = await ctx.integration(start.integration_id)
            if record is None or record.team_id != start.team_id:
                raise InstallRejected(f"no {ctx.type} integration {start.integration_id} for this team")
            return record.id
        row = await ctx.fetchrow(
            "SELECT id FROM integrations WHERE team_id = $1 AND type = $2 AND external_team_id IS NULL",
            start.team_id,
            ctx.type,
        )
        if row is not None:
            found: str = row["id"]
            return found
        try:
            installed = await ctx.install(team_id=start.team_id, user_id=start.user_id, config={})
        except InstallError as exc:
            raise InstallRejected(f"could not install {ctx.type}: {exc.message}") from None
        return installed.id


async def _identity(http: httpx.AsyncClient, settings: GoogleSettings, access_token: str) -> tuple[str, str | None]:
    response = await call(http, "GET", settings.userinfo_url, headers={"Authorization": f"Bearer {access_token}"})
    body = response.json()
    email = body.get("email")
    if not email or body.get("email_verified") is False:
        raise InstallRejected("Google did not share a verified email address for this account")
    return str(email).lower(), body.get("name")
