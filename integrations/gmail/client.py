"""Gmail's REST API as a linked user (`users/me/...`), through the runtime's token store."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import httpx

from integrations.gmail.config import GmailSettings
from integrations.google_common.api import google_call
from integrations.google_common.oauth import GoogleRefresher
from worker.sdk import Context


def refresher(ctx: Context) -> GoogleRefresher:
    return GoogleRefresher(ctx.settings_as(GmailSettings))


async def gmail(
    ctx: Context, link_id: str, method: str, path: str, *, ok_statuses: Container[int] = (), **kwargs: Any
) -> httpx.Response:
    """`path` under `/gmail/v1/users/me`."""
    settings = ctx.settings_as(GmailSettings)
    url = f"{settings.api_url.rstrip('/')}/gmail/v1/users/me{path}"
    return await google_call(ctx, link_id, refresher(ctx), method, url, ok_statuses=ok_statuses, **kwargs)
