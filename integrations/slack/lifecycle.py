"""`app_uninstalled` and `tokens_revoked`: the workspace removed the app or its bot token; the
integration becomes inactive (`uninstalled`, `revoked`), and later events for it are acknowledged
and logged by the worker, not retried. Installing again through OAuth makes it active again."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations.slack.config import SlackConfig
from schemas.events import IntegrationStatus, IntegrationStatusChanged
from worker.context import Context


class RevokedTokens(BaseModel):
    model_config = ConfigDict(extra="ignore")

    oauth: list[str] = Field(default_factory=list)
    bot: list[str] = Field(default_factory=list)


def set_status(ctx: Context, status: IntegrationStatus, reason: str) -> None:
    assert ctx.integration is not None
    previous: Any = ctx.integration.row.status
    if previous == status:
        return
    ctx.db.write(
        "UPDATE integrations SET status = $3, updated_at = now() WHERE team_id = $1 AND id = $2",
        ctx.integration.id,
        status,
    )
    ctx.emit(
        IntegrationStatusChanged(
            integration_id=ctx.integration.id, type="slack", status=status, previous_status=previous, reason=reason
        )
    )
    ctx.record("warning", "status_changed", f"Slack: {reason}")


async def on_app_uninstalled(ctx: Context) -> None:
    if ctx.integration is None:
        ctx.log.info("app_uninstalled for a workspace no team has installed")
        return
    set_status(ctx, "uninstalled", "the app was uninstalled from the workspace")


async def on_tokens_revoked(ctx: Context) -> None:
    if ctx.integration is None:
        ctx.log.info("tokens_revoked for a workspace no team has installed")
        return
    tokens = RevokedTokens.model_validate((ctx.envelope.payload.get("event") or {}).get("tokens") or {})
    bot_user = ctx.config_as(SlackConfig).bot_user_id
    if tokens.bot and (bot_user is None or bot_user in tokens.bot):
        set_status(ctx, "revoked", "the bot token was revoked")
    else:  # only users' tokens: the bot still works
        ctx.log.info("slack user tokens revoked", users=len(tokens.oauth))
