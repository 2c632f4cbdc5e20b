"""What changed in a linked calendar: a push notification (`google-calendar.webhook.notification`)
runs an incremental sync, one per calendar at a time, and publishes `calendar.event_changed`.

    events.list?syncToken=<stored>&showDeleted (every page; the last has nextSyncToken)
    410 Gone (the token expired): a full resync, reporting the events updated since the
        last sync, then the new token
    our own writes (the etag we stored when syncing a task) are not reported back
    the new token is stored with the events, in the message's transaction
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from integrations.google_calendar.client import calendar, events_path
from integrations.google_calendar.config import CalendarConfig, CalendarSettings
from integrations.google_common.links import link_by_id
from schemas.events import CalendarEventChanged
from worker.sdk import Context, Link, ProviderError, TransientError

UPSERT_STATE = """
    INSERT INTO google_calendar_sync (team_id, link_id, integration_id, calendar_id, sync_token, last_synced_at)
    VALUES ($1, $2, $3, $4, $5, now())
    ON CONFLICT (link_id) DO UPDATE SET calendar_id = EXCLUDED.calendar_id, sync_token = EXCLUDED.sync_token,
        last_synced_at = now(), updated_at = now()"""
RESYNC_MARGIN = timedelta(minutes=5)


class Notification(BaseModel):
    model_config = ConfigDict(extra="ignore")

    link_id: str
    channel_id: str
    state: str


async def _list(ctx: Context, link: Link, calendar_id: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Every page of events.list; returns the events and the next sync token."""
    settings = ctx.settings_as(CalendarSettings)
    events: list[dict[str, Any]] = []
    page_token: str | None = None
    for _ in range(settings.max_sync_pages):
        query = {**params, "maxResults": 250}
        if page_token:
            query["pageToken"] = page_token
        body = (await calendar(ctx, link.id, "GET", events_path(calendar_id), params=query)).json()
        events.extend(body.get("items") or [])
        page_token = body.get("nextPageToken")
        if not page_token:
            token = body.get("nextSyncToken")
            if not token:
                raise TransientError("Google Calendar ended the listing without a sync token")
            return events, str(token)
    raise TransientError(f"calendar {calendar_id} has more than {settings.max_sync_pages} pages of changes")


async def baseline(ctx: Context, link: Link, calendar_id: str) -> None:
    """Record the calendar's sync token without reporting what is already there."""
    _, token = await _list(ctx, link, calendar_id, {"showDeleted": "false"})
    ctx.db.write(UPSERT_STATE, link.id, ctx.integration_id, calendar_id, token)


async def on_notification(ctx: Context) -> None:
    notification = ctx.payload_as(Notification)
    link = await link_by_id(ctx, notification.link_id)
    if link is None or not link.active:
        ctx.log.info(
            "calendar notification for a link that is gone or needs reconnecting", link_id=notification.link_id
        )
        return
    calendar_id = ctx.config_as(CalendarConfig).calendar_id
    async with ctx.exclusive(f"calendar:{link.id}"):
        state = await ctx.db.fetchrow(
            "SELECT sync_token, last_synced_at FROM google_calendar_sync WHERE team_id = $1 AND link_id = $2",
            link.id,
        )
        if state is None or not state["sync_token"]:
            await baseline(ctx, link, calendar_id)
            return
        since: datetime | None = None
        try:
            events, token = await _list(
                ctx, link, calendar_id, {"syncToken": state["sync_token"], "showDeleted": "true"}
            )
        except ProviderError as exc:
            if exc.status != 410:
                raise
            ctx.record("warning", "sync_token_expired", f"{link.external_user_id}: sync token expired; full resync")
            events, token = await _list(ctx, link, calendar_id, {"showDeleted": "true"})
            since = state["last_synced_at"] - RESYNC_MARGIN if state["last_synced_at"] else None
        reported = await _report(ctx, link, calendar_id, events, since)
        ctx.db.write(UPSERT_STATE, link.id, ctx.integration_id, calendar_id, token)
        ctx.log.info("calendar synced", link_id=link.id, changes=len(events), reported=reported)


async def _report(
    ctx: Context, link: Link, calendar_id: str, events: list[dict[str, Any]], since: datetime | None
) -> int:
    ids = [str(e["id"]) for e in events if e.get("id")]
    ours = {
        r["event_id"]: (r["task_id"], r["etag"])
        for r in await ctx.db.fetch(
            """SELECT event_id, task_id, etag FROM google_calendar_task_events
               WHERE team_id = $1 AND link_id = $2 AND event_id = ANY($3::text[])""",
            link.id,
            ids,
        )
    }
    reported = 0
    for event in events:
        event_id = str(event.get("id") or "")
        if not event_id:
            continue
        task_id, etag = ours.get(event_id, (None, None))
        if etag is not None and etag == event.get("etag"):
            continue  # our own write for a task
        if since is not None and not _updated_after(event, since):
            continue
        status = str(event.get("status") or "confirmed")
        ctx.emit(
            CalendarEventChanged(
                link_id=link.id,
                user_id=link.user_id,
                calendar_id=calendar_id,
                event_id=event_id,
                status=status,
                deleted=status == "cancelled",
                summary=event.get("summary"),
                description=event.get("description"),
                location=event.get("location"),
                start=_when(event.get("start")),
                end=_when(event.get("end")),
                html_link=event.get("htmlLink"),
                updated=event.get("updated"),
                task_id=task_id or (event.get("extendedProperties") or {}).get("private", {}).get("iwTaskId"),
            )
        )
        reported += 1
    return reported


def _when(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    found = value.get("dateTime") or value.get("date")
    return str(found) if found else None


def _updated_after(event: dict[str, Any], since: datetime) -> bool:
    updated = event.get("updated")
    if not updated:
        return True
    try:
        return datetime.fromisoformat(str(updated).replace("Z", "+00:00")) >= since
    except ValueError:
        return True
