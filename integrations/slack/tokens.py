"""The bot token, rotated when the workspace has token rotation on (docs.slack.dev: tokens expire
every 12 hours and come with a refresh token; each refresh returns a new pair and revokes the old
refresh token).

Refreshed 2 hours before expiry (as slack_sdk's TokenRotator does), once at a time in a process,
after re-reading the stored config (another process may have rotated it meanwhile). The new pair
is stored at once (`ctx.save_config`), not with the message: Slack has already revoked the old
refresh token. When Slack refuses a refresh token that another process has just used, the stored
config is read again and its fresh token used.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from pydantic import SecretStr

from integrations.slack.config import SlackConfig, SlackSettings
from integrations.slack.errors import classify, error_of
from worker.sdk import Context, PermanentError, ProviderError, call

REFRESH_MARGIN = timedelta(hours=2)


def _fresh(config: SlackConfig, now: datetime) -> bool:
    return (
        config.refresh_token is None
        or config.token_expires_at is None
        or config.token_expires_at - now > REFRESH_MARGIN
    )


async def bot_token(ctx: Context) -> str:
    config = ctx.config_as(SlackConfig)
    if ctx.integration is None or _fresh(config, datetime.now(UTC)):  # (no integration: an install's check)
        return config.access_token.get_secret_value()

    async def refresh() -> tuple[str, float]:
        token, expires_at = await _refresh(ctx)
        return token, (expires_at - REFRESH_MARGIN - datetime.now(UTC)).total_seconds()

    token: str = await ctx.cache.get_or_compute(f"bot-token:{ctx.integration.id}", refresh)
    return token


async def _stored(ctx: Context) -> SlackConfig:
    """The config as stored now: another process may have rotated the token meanwhile."""
    return (await ctx.integrations.reload()).config_as(SlackConfig)


async def _refresh(ctx: Context) -> tuple[str, datetime]:
    settings = ctx.settings_as(SlackSettings)
    current = await _stored(ctx)
    now = datetime.now(UTC)
    if _fresh(current, now) or current.refresh_token is None:
        return current.access_token.get_secret_value(), current.token_expires_at or now + REFRESH_MARGIN * 6
    if not settings.client_id or settings.client_secret is None:
        raise PermanentError("Slack token rotation needs IW_SLACK_CLIENT_ID and IW_SLACK_CLIENT_SECRET")
    try:
        response = await call(
            ctx.http,
            "POST",
            f"{settings.api_url}/oauth.v2.access",
            data={"grant_type": "refresh_token", "refresh_token": current.refresh_token.get_secret_value()},
            auth=httpx.BasicAuth(settings.client_id, settings.client_secret.get_secret_value()),
            classify=classify,
        )
    except ProviderError as exc:
        again = await _stored(ctx)  # another process may have used the refresh token first
        if again.refresh_token is not None and again.refresh_token != current.refresh_token and _fresh(again, now):
            return again.access_token.get_secret_value(), again.token_expires_at or now
        raise PermanentError(
            f"Slack refused to refresh the bot token ({error_of(exc.body)}): reinstall the app"
        ) from None
    body = response.json()
    expires_at = now + timedelta(seconds=int(body.get("expires_in") or 43200))
    rotated = current.model_copy(
        update={
            "access_token": SecretStr(body["access_token"]),
            "refresh_token": SecretStr(body.get("refresh_token") or current.refresh_token.get_secret_value()),
            "token_expires_at": expires_at,
        }
    )
    await ctx.save_config(rotated)
    ctx.record("info", "token_rotated", "Slack bot token refreshed")
    return str(body["access_token"]), expires_at
