"""Google's OAuth 2.0 for a user link (PROVIDERS.md §2.5): the authorize URL with
`access_type=offline` and `prompt=consent` (so Google always returns a refresh token), the
code exchange, the refresh (`grant_type=refresh_token`; `invalid_grant` is final), and the
account's address from the userinfo endpoint.

The runtime's generic routes (`GET /oauth/{type}/start|callback`, worker/platform/oauth.py) carry the
signed state (team, user, integration); `GoogleOAuthFlow.complete` stores the link through
`ctx.tokens.save` (tokens encrypted) and then runs the integration's `after_link`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from integrations.google_common.settings import GoogleSettings
from worker.sdk import (
    Context,
    InstallRejected,
    IntegrationError,
    IntegrationRecord,
    InvalidGrant,
    NewLink,
    OAuthStart,
    PermanentError,
    TokenGrant,
    call,
    classify_response,
    redact,
)

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


# What to do once a user is linked: `ctx` is bound to the integration, then the link's id.
AfterLink = Callable[[Context, str, GoogleSettings], Awaitable[None]]


@dataclass(frozen=True)
class GoogleOAuthFlow:
    """`OAuthFlow` of a Google integration: its scopes, its settings model, the link's initial
    config, and what to do once a user is linked (start a Gmail watch, a Calendar channel)."""

    settings_model: type[GoogleSettings]
    scopes: Sequence[str]
    link_config: dict[str, Any] = field(default_factory=dict)
    after_link: AfterLink | None = None

    def authorize_url(
        self, ctx: Context, *, state: str, redirect_uri: str, start: OAuthStart, code_challenge: str
    ) -> str:
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
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        return f"{settings.auth_url}?{urlencode(query)}"

    async def complete(
        self,
        ctx: Context,
        *,
        code: str | None,
        redirect_uri: str,
        start: OAuthStart,
        code_verifier: str,
        query: Mapping[str, str],
    ) -> str | None:
        if not code:
            raise InstallRejected("Google returned no authorization code")
        if not start.user_id:
            raise InstallRejected("a Google account is linked to a platform user: start the flow with user_id")
        settings = ctx.settings_as(self.settings_model)
        try:
            grant = await _token_request(
                ctx.http,
                settings,
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": code_verifier,
                },
            )
            missing = sorted(set(self.scopes) - set((grant.scope or "").split()))
            if grant.scope is not None and missing:
                raise InstallRejected(f"Google did not grant every permission needed: {', '.join(missing)}")
            email, name = await _identity(ctx.http, settings, grant.access_token)
        except InvalidGrant as exc:
            raise InstallRejected(f"Google refused the authorization code ({exc})") from None
        except IntegrationError as exc:
            raise InstallRejected(f"Google sign-in failed: {redact(str(exc))}") from None
        record = await self._integration(ctx, start)
        linked = ctx.bound(record)
        existing = await linked.links.find(email)
        if grant.refresh_token is None and not (existing is not None and existing.has_refresh_token):
            raise InstallRejected(
                "Google returned no refresh token: remove the app's access in the Google account settings"
                " and connect again"
            )
        link_id = await linked.tokens.save(
            NewLink(
                team_id=start.team_id,
                integration_id=record.id,
                integration_type=ctx.type,
                user_id=start.user_id,
                external_user_id=email,
                external_user_name=name,
                grant=grant,
                config={**self.link_config, "scopes": sorted((grant.scope or "").split())},
            )
        )
        if self.after_link is not None:
            try:
                await self.after_link(linked, link_id, settings)
            except Exception as exc:  # the schedule will catch up; the link itself is stored
                ctx.log.warning("after-link step failed; the schedule will retry it", error=redact(str(exc)))
        return record.id

    async def _integration(self, ctx: Context, start: OAuthStart) -> IntegrationRecord:
        """The team's integration of this type: the one named, else its only one, else a new one."""
        if start.integration_id:
            record = await ctx.integrations.get(start.integration_id)
            if record is None or record.team_id != start.team_id:
                raise InstallRejected(f"no {ctx.type} integration {start.integration_id} for this team")
            return record
        for record in await ctx.integrations.of_team(start.team_id):
            if record.external_team_id is None:
                return record
        try:
            return await ctx.install(team_id=start.team_id, user_id=start.user_id, config={})
        except InstallRejected as exc:
            raise InstallRejected(f"could not install {ctx.type}: {exc}") from None


async def _identity(http: httpx.AsyncClient, settings: GoogleSettings, access_token: str) -> tuple[str, str | None]:
    response = await call(http, "GET", settings.userinfo_url, headers={"Authorization": f"Bearer {access_token}"})
    body = response.json()
    email = body.get("email")
    if not email or body.get("email_verified") is False:
        raise InstallRejected("Google did not share a verified email address for this account")
    return str(email).lower(), body.get("name")
