"""Files attached to Slack messages, fetched with the workspace's bot token (MIMRAI used Twilio's
credentials here) and only from Slack's file hosts (IW_SLACK_FILE_HOSTS), so the token never goes
elsewhere."""

from __future__ import annotations

from urllib.parse import urlsplit

from integrations.slack.config import SlackConfig, SlackSettings
from worker.sdk import Context, Download, IntegrationRecord, PermanentError, download


async def fetch(ctx: Context, record: IntegrationRecord, ref: str) -> Download:
    settings = ctx.settings_as(SlackSettings)
    parts = urlsplit(ref)
    if parts.scheme not in ("https", "http") or (parts.hostname or "").lower() not in settings.allowed_file_hosts():
        raise PermanentError("not a Slack file URL")
    config = record.config
    assert isinstance(config, SlackConfig)
    return await download(
        ctx.http,
        ref,
        headers={"Authorization": f"Bearer {config.access_token.get_secret_value()}"},
        max_bytes=ctx.runtime_settings.attachment_max_bytes,
        redirect_hosts=settings.file_redirect_hosts.split(","),
    )
