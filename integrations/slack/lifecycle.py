"""`app_uninstalled` and `tokens_revoked`: the workspace removed the app or its bot token; the
integration becomes inactive (`uninstalled`, `revoked`), and later events for it are acknowledged
and logged by the worker, not retried. Installing again through OAuth makes it active again."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from integrations.slack.config import SlackConfig
from worker.sdk import Context


class RevokedTokens(BaseModel):
    model_config = ConfigDict(extra="ignore")

    oauth: list[str] = Field(default_factory=list)
    bot: list[str] = Field(default_factory=list)


async def on_app_uninstalled(ctx: Context) -> None:
    if ctx.integration is None:
        ctx.log.info("app_uninstalled for a workspace no team has installed")
        return
    ctx.set_status("uninstalled", "the Slack app was uninstalled from the workspace")


async def on_tokens_revoked(ctx: Context) -> None:
    if ctx.integration is None:
        ctx.log.info("tokens_revoked for a workspace no team has installed")
        return
    tokens = RevokedTokens.model_validate((ctx.envelope.payload.get("event") or {}).get("tokens") or {})
    bot_user = ctx.config_as(SlackConfig).bot_user_id
    if tokens.bot and (bot_user is None or bot_user in tokens.bot):
        ctx.set_status("revoked", "the Slack bot token was revoked")
    else:  # only users' tokens: the bot still works
        ctx.log.info("slack user tokens revoked", users=len(tokens.oauth))
