"""Install check: the bot token must work (`auth.test`) and belong to the configured workspace."""

from __future__ import annotations

from integrations.slack import api
from integrations.slack.config import SlackConfig
from integrations.slack.errors import error_of
from worker.sdk import Context, InstallRejected, ProviderError, TransientError


async def validate(ctx: Context) -> None:
    config = ctx.config_as(SlackConfig)
    try:
        body = await api.call(ctx, "auth.test", {})
    except ProviderError as exc:
        raise InstallRejected(f"Slack refused the bot token ({error_of(exc.body) or exc.status})") from None
    except TransientError:
        raise InstallRejected("Slack could not be reached to check the bot token; try again") from None
    if body.get("team_id") and body["team_id"] != config.team_id:
        raise InstallRejected(f"the bot token belongs to workspace {body['team_id']}, not {config.team_id}")
