"""Install check: the server must answer `GET /api/v4/users/me` for the token (MIMRAI's
validateMattermost), and say clearly what is wrong when it does not."""

from __future__ import annotations

from integrations.mattermost.api import fetch_me
from integrations.mattermost.config import MattermostConfig
from worker.sdk import Context, InstallRejected, ProviderError, TransientError


async def validate(ctx: Context) -> None:
    config = ctx.config_as(MattermostConfig)
    try:
        me = await fetch_me(ctx.http, config)
    except ProviderError as exc:
        if exc.status in (401, 403):
            raise InstallRejected(
                f"Mattermost at {config.url} refused the token (HTTP {exc.status}): "
                "use a valid bot or personal access token"
            ) from None
        if exc.status == 404:
            raise InstallRejected(
                f"{config.url} does not look like a Mattermost server (no /api/v4/users/me)"
            ) from None
        raise InstallRejected(f"Mattermost at {config.url} refused the check (HTTP {exc.status})") from None
    except TransientError as exc:
        raise InstallRejected(f"cannot reach Mattermost at {config.url}: {exc}") from None
    ctx.log.info("mattermost token checked", bot_user_id=me.id, username=me.username)
