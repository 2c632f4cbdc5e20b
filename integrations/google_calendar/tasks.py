"""`google-calendar.command.sync_task`: keep one event per task in each subscriber's calendar.

The event id is the task's UUID without hyphens (valid base32hex), so an insert is idempotent:
a repeated sync gets 409 and PATCHes the same event (`status: confirmed` revives one that was
deleted). `google_calendar_task_events` maps (task, link) to the event. A task without a due
date, a subscriber removed, or a user who turned `syncEvents` off loses the event (404 and 410
count as done). A subscriber whose Google link needs reconnecting is skipped, not retried.
Unlike MIMRAI, events last `task_event_minutes` (not zero), and all-day when the due date
has no time.

Syncs of one task run one at a time across all workers (a lease held until the outcome commits),
and with the platform's `updated_at` a sync older than one already applied is skipped: a retry
or a redelivery arriving after a newer state must not bring back an old due date or a deleted
event (`google_calendar_task_versions`). The state applied is kept (`google_calendar_tasks`): a
user who turns `syncEvents` on gets the events of the tasks they follow from it (user_links.py).

`google-calendar.event.task_deleted` (or `.command.task_deleted`) `{task_id}`: the platform deleted
the task; its event goes from every calendar and the task becomes a tombstone, so a sync of it
arriving late (or again) is skipped and cannot bring an event back. Repeats are harmless.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from integrations.google_calendar.client import calendar, events_path
from integrations.google_calendar.config import CalendarConfig, link_settings
from integrations.google_common.links import links_of
from worker.sdk import Context, Link, LinkNeedsReconnect

UPSERT_MAPPING = """
    INSERT INTO google_calendar_task_events (team_id, task_id, link_id, integration_id, calendar_id, event_id, etag)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (task_id, link_id) DO UPDATE SET calendar_id = EXCLUDED.calendar_id, event_id = EXCLUDED.event_id,
        etag = EXCLUDED.etag, synced_at = now()"""
DELETE_MAPPING = "DELETE FROM google_calendar_task_events WHERE team_id = $1 AND task_id = $2 AND link_id = $3"
MAPPED = "SELECT link_id, calendar_id, event_id FROM google_calendar_task_events WHERE team_id = $1 AND task_id = $2"
APPLIED_VERSION = "SELECT updated_at FROM google_calendar_task_versions WHERE team_id = $1 AND task_id = $2"
DELETED_AT = "SELECT deleted_at FROM google_calendar_tasks WHERE team_id = $1 AND task_id = $2"
SAVE_STATE = """
    INSERT INTO google_calendar_tasks (team_id, task_id, integration_id, task, subscribers, has_due_date)
    VALUES ($1, $2, $3, $4::jsonb, $5::text[], $6)
    ON CONFLICT (team_id, task_id) DO UPDATE SET task = EXCLUDED.task, subscribers = EXCLUDED.subscribers,
        has_due_date = EXCLUDED.has_due_date, integration_id = EXCLUDED.integration_id, updated_at = now()
    WHERE google_calendar_tasks.deleted_at IS NULL"""
TOMBSTONE = """
    INSERT INTO google_calendar_tasks (team_id, task_id, integration_id, deleted_at) VALUES ($1, $2, $3, now())
    ON CONFLICT (team_id, task_id) DO UPDATE SET task = NULL, subscribers = '{}', has_due_date = false,
        deleted_at = COALESCE(google_calendar_tasks.deleted_at, now()), updated_at = now()"""
SAVE_VERSION = """
    INSERT INTO google_calendar_task_versions (team_id, task_id, integration_id, updated_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (team_id, task_id) DO UPDATE
        SET updated_at = GREATEST(google_calendar_task_versions.updated_at, EXCLUDED.updated_at)"""


class SyncTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: uuid.UUID
    title: str = Field(min_length=1, max_length=1000)
    task_ref: str | None = Field(default=None, max_length=64, description="`ABC-12`; the summary starts with it.")
    description: str | None = Field(default=None, max_length=8000)
    url: str | None = Field(default=None, max_length=2000, description="The task's page in the platform.")
    team_name: str | None = Field(default=None, max_length=200)
    due_date: dt.datetime | dt.date | None = Field(description="None: the task has no due date (events go).")
    timezone: str = Field(default="UTC", max_length=64, description="The team's IANA time zone.")
    subscribers: list[str] = Field(default_factory=list, description="Platform user ids who get the event.")
    updated_at: dt.datetime | None = Field(
        default=None,
        description="When the task last changed in the platform: a sync older than one already applied is skipped.",
    )

    @field_validator("updated_at")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("updated_at needs a time zone (e.g. 2026-11-25T10:00:00Z)")
        return value

    @field_validator("due_date", mode="before")
    @classmethod
    def _day_or_moment(cls, value: object) -> object:
        """`2026-12-01` is a day (an all-day event), not midnight."""
        if isinstance(value, str) and len(value) == 10:
            return dt.date.fromisoformat(value)
        return value


class TaskDeleted(BaseModel):
    """The platform deleted a task (its own event may carry more: ignored)."""

    model_config = ConfigDict(extra="ignore")

    task_id: uuid.UUID
    deleted_at: AwareDatetime | None = Field(default=None, description="When, for the logs.")


def event_id_for(task_id: uuid.UUID) -> str:
    return task_id.hex


def _times(due: dt.datetime | dt.date, timezone: str, minutes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    if isinstance(due, dt.datetime):
        end = due + dt.timedelta(minutes=minutes)
        return {"dateTime": due.isoformat(), "timeZone": timezone}, {"dateTime": end.isoformat(), "timeZone": timezone}
    return {"date": due.isoformat()}, {"date": (due + dt.timedelta(days=1)).isoformat()}


def _body(task: SyncTask, minutes: int) -> dict[str, Any]:
    assert task.due_date is not None
    start, end = _times(task.due_date, task.timezone, minutes)
    body: dict[str, Any] = {
        "summary": f"{task.task_ref} {task.title}" if task.task_ref else task.title,
        "description": task.description or "",
        "start": start,
        "end": end,
        "status": "confirmed",
        "extendedProperties": {"private": {"iwTaskId": str(task.task_id)}},
    }
    if task.url:
        body["source"] = {"title": f"Task in {task.team_name}" if task.team_name else "Task", "url": task.url}
    return body


async def upsert_event(ctx: Context, link: Link, calendar_id: str, task: SyncTask, minutes: int) -> str | None:
    event_id = event_id_for(task.task_id)
    body = _body(task, minutes)
    params = {"sendUpdates": "none"}
    response = await calendar(
        ctx,
        link.id,
        "POST",
        events_path(calendar_id),
        json={"id": event_id, **body},
        params=params,
        ok_statuses=(409,),
    )
    if response.status_code == 409:  # it exists (an earlier sync, or deleted and kept as cancelled)
        response = await calendar(ctx, link.id, "PATCH", events_path(calendar_id, event_id), json=body, params=params)
    etag: str | None = response.json().get("etag")
    return etag


async def delete_event(ctx: Context, link_id: str, calendar_id: str, event_id: str) -> None:
    await calendar(
        ctx,
        link_id,
        "DELETE",
        events_path(calendar_id, event_id),
        params={"sendUpdates": "none"},
        ok_statuses=(404, 410),
    )


def wants_event(task: SyncTask, link: Link) -> bool:
    """Whether this user's calendar shows this task: it is due, they follow it, they sync events."""
    return (
        task.due_date is not None
        and link.active
        and link.user_id in task.subscribers
        and link_settings(link).sync_events
    )


async def on_sync_task(ctx: Context) -> None:
    task = ctx.payload_as(SyncTask)
    async with ctx.exclusive(f"task:{task.task_id}"):
        if await ctx.db.fetchval(DELETED_AT, str(task.task_id)) is not None:
            ctx.log.info("sync of a deleted task skipped", task_id=str(task.task_id))
            ctx.record("info", "deleted_task_sync_skipped", f"task {task.task_id}: the task was deleted")
            return
        if task.updated_at is not None:
            applied = await ctx.db.fetchval(APPLIED_VERSION, str(task.task_id))
            if applied is not None and applied > task.updated_at:
                ctx.log.info("stale task sync skipped", task_id=str(task.task_id), applied=applied.isoformat())
                ctx.record("info", "stale_sync_skipped", f"task {task.task_id}: a newer state was already synced")
                return
            ctx.db.write(SAVE_VERSION, str(task.task_id), ctx.integration_id, task.updated_at)
        ctx.db.write(
            SAVE_STATE,
            str(task.task_id),
            ctx.integration_id,
            task.model_dump(mode="json"),
            task.subscribers,
            task.due_date is not None,
        )
        await _sync(ctx, task)


async def _sync(ctx: Context, task: SyncTask) -> None:
    config = ctx.config_as(CalendarConfig)
    task_id = str(task.task_id)
    wanted = []
    if task.due_date is not None and task.subscribers:
        wanted = [link for link in await links_of(ctx, user_ids=task.subscribers) if wants_event(task, link)]
    wanted_ids = {link.id for link in wanted}
    mapped = await ctx.db.fetch(MAPPED, task_id)
    removed = 0
    for row in mapped:
        if row["link_id"] in wanted_ids:
            continue
        try:
            await delete_event(ctx, row["link_id"], row["calendar_id"], row["event_id"])
        except LinkNeedsReconnect:
            ctx.log.info("task event left in a calendar whose link needs reconnecting", link_id=row["link_id"])
        ctx.db.write(DELETE_MAPPING, task_id, row["link_id"])
        removed += 1
    synced = 0
    for link in wanted:
        try:
            etag = await upsert_event(ctx, link, config.calendar_id, task, config.task_event_minutes)
        except LinkNeedsReconnect:
            ctx.log.info("task not synced to a calendar whose link needs reconnecting", link_id=link.id)
            continue
        ctx.db.write(
            UPSERT_MAPPING, task_id, link.id, ctx.integration_id, config.calendar_id, event_id_for(task.task_id), etag
        )
        synced += 1
    ctx.log.info("task synced to calendars", task_id=task_id, synced=synced, removed=removed)


async def on_task_deleted(ctx: Context) -> None:
    """`google-calendar.event.task_deleted` / `.command.task_deleted`: the task's events go from
    every calendar (404 and 410 count as done), and the task becomes a tombstone."""
    if ctx.integration is None:  # the platform's event reaches teams without the calendar too
        ctx.log.debug("task deleted in a team without Google Calendar: nothing to do")
        return
    deleted = ctx.payload_as(TaskDeleted)
    task_id = str(deleted.task_id)
    async with ctx.exclusive(f"task:{deleted.task_id}"):
        removed = 0
        for row in await ctx.db.fetch(MAPPED, task_id):
            try:
                await delete_event(ctx, row["link_id"], row["calendar_id"], row["event_id"])
                removed += 1
            except LinkNeedsReconnect:
                ctx.log.info("task event left in a calendar whose link needs reconnecting", link_id=row["link_id"])
            ctx.db.write(DELETE_MAPPING, task_id, row["link_id"])
        ctx.db.write(TOMBSTONE, task_id, ctx.integration_id)
    ctx.record("info", "task_deleted", f"task {task_id} deleted: its event removed from {removed} calendar(s)")
