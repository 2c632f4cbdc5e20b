"""Google Calendar's REST API as a linked user, through the runtime's token store."""

from __future__ import annotations

from collections.abc import Container
from typing import Any
from urllib.parse import quote

import httpx

from integrations.google_calendar.config import CalendarSettings
from integrations.google_common.api import google_call
from integrations.google_common.oauth import GoogleRefresher
from worker.sdk import Context


def refresher(ctx: Context) -> GoogleRefresher:
    return GoogleRefresher(ctx.settings_as(CalendarSettings))


def events_path(calendar_id: str, event_id: str | None = None) -> str:
    path = f"/calendars/{quote(calendar_id, safe='')}/events"
    return f"{path}/{quote(event_id, safe='')}" if event_id else path


async def calendar(
    ctx: Context, link_id: str, method: str, path: str, *, ok_statuses: Container[int] = (), **kwargs: Any
) -> httpx.Response:
    settings = ctx.settings_as(CalendarSettings)
    url = f"{settings.api_url.rstrip('/')}{path}"
    return await google_call(ctx, link_id, refresher(ctx), method, url, ok_statuses=ok_statuses, **kwargs)
