"""Files attached to Mattermost posts, fetched from the integration's own server with its token."""

from __future__ import annotations

import re

from integrations.mattermost.config import MattermostConfig
from worker.sdk import Context, Download, IntegrationRecord, PermanentError, download

_FILE_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")


async def fetch(ctx: Context, record: IntegrationRecord, ref: str) -> Download:
    if not _FILE_ID.match(ref):
        raise PermanentError("not a Mattermost file id")
    config = record.config
    assert isinstance(config, MattermostConfig)
    return await download(
        ctx.http,
        f"{config.api}/files/{ref}",
        headers=config.headers(),
        max_bytes=ctx.runtime_settings.attachment_max_bytes,
    )
