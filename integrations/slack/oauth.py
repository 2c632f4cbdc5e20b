"""Installing Slack: OAuth v2 through the runtime's generic flow (worker/platform/oauth.py).

The runtime's flow sends the browser to Slack's authorize URL with the bot scopes, a signed,
single-use `state` bound to that browser (MIMRAI sent none) and a PKCE challenge; on the
callback this exchanges the code (with the PKCE verifier) at `oauth.v2.access`, the client id
and secret as HTTP Basic, and installs the
workspace for the team: bot token (encrypted), bot user id, scopes, the Slack team id (which
routes its events), and, with token rotation on, the refresh token and expiry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from integrations.slack.config import SlackSettings
from integrations.slack.errors import classify, error_of
from worker.sdk import Context, InstallRejected, OAuthStart, ProviderError, TransientError, call


def _credentials(settings: SlackSettings) -> tuple[str, str]:
    if not settings.client_id or settings.client_secret is None:
        raise InstallRejected("Slack install is not configured: set IW_SLACK_CLIENT_ID and IW_SLACK_CLIENT_SECRET")
    return settings.client_id, settings.client_secret.get_secret_value()


class SlackOAuth:
    def authorize_url(
        self, ctx: Context, *, state: str, redirect_uri: str, start: OAuthStart, code_challenge: str
    ) -> str:
        settings = ctx.settings_as(SlackSettings)
        client_id, _ = _credentials(settings)
        query = urlencode(
            {
                "client_id": client_id,
                "scope": settings.scopes,
                "redirect_uri": redirect_uri,
                "state": state,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{settings.authorize_url}?{query}"

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
            raise InstallRejected("Slack returned no authorization code")
        settings = ctx.settings_as(SlackSettings)
        client_id, client_secret = _credentials(settings)
        try:
            response = await call(
                ctx.http,
                "POST",
                f"{settings.api_url}/oauth.v2.access",
                data={"code": code, "redirect_uri": redirect_uri, "code_verifier": code_verifier},
                auth=httpx.BasicAuth(client_id, client_secret),
                classify=classify,
            )
        except ProviderError as exc:
            raise InstallRejected(f"Slack refused the install ({error_of(exc.body) or exc.status})") from None
        except TransientError:
            raise InstallRejected("Slack could not be reached; try the install again") from None
        body = response.json()
        team = body.get("team") or {}
        if body.get("is_enterprise_install") or not team.get("id"):
            raise InstallRejected(
                "organisation-wide (Enterprise Grid) installs are not supported; install per workspace"
            )
        if body.get("token_type") != "bot" or not body.get("access_token"):
            raise InstallRejected("Slack did not return a bot token")
        config: dict[str, Any] = {
            "teamId": team["id"],
            "teamName": team.get("name"),
            "accessToken": body["access_token"],
            "botUserId": body.get("bot_user_id"),
            "appId": body.get("app_id"),
            "scopes": [s for s in str(body.get("scope") or "").split(",") if s],
        }
        if body.get("refresh_token"):
            config["refreshToken"] = body["refresh_token"]
            expires_in = int(body.get("expires_in") or 43200)
            config["tokenExpiresAt"] = (datetime.now(UTC) + timedelta(seconds=expires_in)).isoformat()
        record = await ctx.install(team_id=start.team_id, user_id=start.user_id, config=config)
        return record.id
