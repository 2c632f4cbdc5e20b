"""Media of WhatsApp messages, fetched with the Twilio account's Basic auth, from Twilio's hosts
only (IW_WHATSAPP_MEDIA_HOSTS). Twilio redirects to its storage, which is followed only to the
hosts of IW_WHATSAPP_MEDIA_REDIRECT_HOSTS and never gets the credentials."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

from integrations.whatsapp import api
from integrations.whatsapp.config import WhatsappSettings
from worker.sdk import Context, Download, IntegrationRecord, PermanentError, download


async def fetch(ctx: Context, record: IntegrationRecord, ref: str) -> Download:
    settings = ctx.settings_as(WhatsappSettings)
    parts = urlsplit(ref)
    if parts.scheme not in ("https", "http") or (parts.hostname or "").lower() not in settings.allowed_media_hosts():
        raise PermanentError("not a Twilio media URL")
    sid, token = api.credentials(settings)
    basic = base64.b64encode(f"{sid}:{token}".encode()).decode()
    return await download(
        ctx.http,
        ref,
        headers={"Authorization": f"Basic {basic}"},
        max_bytes=ctx.runtime_settings.attachment_max_bytes,
        redirect_hosts=settings.media_redirect_hosts.split(","),
    )
