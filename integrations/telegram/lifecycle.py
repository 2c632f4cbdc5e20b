"""Install: the token must be a bot Telegram knows (getMe); then Telegram is told where to send
updates (setWebhook, with the integration's secret token). Uninstall: deleteWebhook."""

from __future__ import annotations

from integrations.telegram.api import bot
from integrations.telegram.config import TelegramConfig, TelegramSettings
from integrations.telegram.verify import webhook_secret
from worker.sdk import Context, InstallRejected, ProviderError


async def validate(ctx: Context) -> None:
    try:
        me = await bot(ctx.http, ctx.settings_as(TelegramSettings), ctx.config_as(TelegramConfig), "getMe")
    except ProviderError as exc:
        raise InstallRejected(f"Telegram refused the bot token ({exc})") from None
    if not me.get("is_bot"):
        raise InstallRejected("this token is not a bot's")


async def register_webhook(ctx: Context) -> None:
    assert ctx.integration is not None
    settings = ctx.runtime_settings
    await bot(
        ctx.http,
        ctx.settings_as(TelegramSettings),
        ctx.config_as(TelegramConfig),
        "setWebhook",
        {
            "url": f"{settings.public_url.rstrip('/')}/webhooks/telegram/{ctx.integration.id}",
            "secret_token": webhook_secret(settings.signing_key.get_secret_value(), ctx.integration.id),
            "allowed_updates": ["message"],
        },
    )


async def remove_webhook(ctx: Context) -> None:
    try:
        await bot(ctx.http, ctx.settings_as(TelegramSettings), ctx.config_as(TelegramConfig), "deleteWebhook")
    except ProviderError as exc:
        if exc.status != 401:  # a revoked token has no webhook left to remove
            raise
