"""What a linked user changes of their own link, and unlinking (the platform's link routes, CLI and
commands call these through `UserLinks`).

`syncEvents` turned off: the user's task events go from their calendar; turned on: the tasks they
follow that have a due date get their event, from the task states kept by `sync_task`. Either way
the hook, running in the change's unit of work, only publishes one
`google-calendar.command.sync_task_for_link {task_id, link_id}` per task: each is its own unit with
the worker's retries, and decides when it runs (under the task's lease, like `sync_task`) from the
link's settings and the task's state as they are then, so quick toggles end as the last one says.

Unlinking removes the user's task events from their calendar (nothing left behind that no one
could remove later), stops the link's push channels and revokes its grant at Google.
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict

from integrations.google_calendar.channels import stop_channel
from integrations.google_calendar.client import refresher
from integrations.google_calendar.config import CalendarConfig, CalendarLinkConfig
from integrations.google_calendar.tasks import (
    DELETE_MAPPING,
    UPSERT_MAPPING,
    SyncTask,
    delete_event,
    event_id_for,
    upsert_event,
    wants_event,
)
from integrations.google_common.revoke import revoke
from worker.sdk import Context, Link

# Those with an event in the user's calendar and those they follow, either way: a `sync_task` that
# read the link before the change may still add or remove an event after this read, and the
# task's `sync_task_for_link`, which runs under the same task lease after it, sets it right.
TASKS_CONCERNED = """
    SELECT task_id FROM google_calendar_task_events WHERE team_id = $1 AND link_id = $2
    UNION
    SELECT task_id FROM google_calendar_tasks
    WHERE team_id = $1 AND subscribers @> ARRAY[$3]::text[] AND has_due_date AND deleted_at IS NULL
    ORDER BY task_id"""
TASK_STATE = "SELECT task FROM google_calendar_tasks WHERE team_id = $1 AND task_id = $2 AND deleted_at IS NULL"
LINK_EVENTS = """
    SELECT task_id, calendar_id, event_id FROM google_calendar_task_events
    WHERE team_id = $1 AND link_id = $2 ORDER BY task_id"""
MAPPED_EVENT = """
    SELECT calendar_id, event_id FROM google_calendar_task_events
    WHERE team_id = $1 AND task_id = $2 AND link_id = $3"""


class SyncTaskForLink(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: uuid.UUID
    link_id: str


def _settings(value: BaseModel) -> CalendarLinkConfig:
    if not isinstance(value, CalendarLinkConfig):
        raise TypeError(f"link settings are {type(value).__name__}, not CalendarLinkConfig")
    return value


async def on_config_change(ctx: Context, link: Link, before: BaseModel, after: BaseModel) -> None:
    """`syncEvents` changed: one `sync_task_for_link` per task concerned (those with an event in
    the user's calendar, and those they follow with a due date)."""
    on = _settings(after).sync_events
    if _settings(before).sync_events == on:
        return
    rows = await ctx.db.fetch(TASKS_CONCERNED, link.id, link.user_id)
    for row in rows:
        ctx.publish(
            "command",
            "sync_task_for_link",
            {"task_id": row["task_id"], "link_id": link.id},
            id=f"{ctx.envelope.id}/task:{row['task_id']}",
        )
    ctx.record(
        "info",
        "sync_events_on" if on else "sync_events_off",
        f"{link.external_user_id}: task events {'added to' if on else 'removed from'} the calendar"
        f" ({len(rows)} task(s))",
        user_link_id=link.id,
    )


async def on_sync_task_for_link(ctx: Context) -> None:
    """`google-calendar.command.sync_task_for_link`: this user's event of this task, as the task's
    kept state and the link's settings say now: created (or revived), or deleted."""
    command = ctx.payload_as(SyncTaskForLink)
    task_id = str(command.task_id)
    async with ctx.exclusive(f"task:{command.task_id}"):
        link = await ctx.links.get(command.link_id)
        if link is None or not link.active:
            ctx.log.info("task event not synced: the link is gone or needs reconnecting", link_id=command.link_id)
            return
        state = await ctx.db.fetchrow(TASK_STATE, task_id)
        task = SyncTask.model_validate(state["task"]) if state is not None and state["task"] else None
        if task is not None and wants_event(task, link):
            config = ctx.config_as(CalendarConfig)
            etag = await upsert_event(ctx, link, config.calendar_id, task, config.task_event_minutes)
            ctx.db.write(
                UPSERT_MAPPING,
                task_id,
                link.id,
                ctx.integration_id,
                config.calendar_id,
                event_id_for(task.task_id),
                etag,
            )
            ctx.log.info("task event added to a calendar", task_id=task_id, link_id=link.id)
            return
        mapped = await ctx.db.fetchrow(MAPPED_EVENT, task_id, link.id)
        if mapped is not None:
            await delete_event(ctx, link.id, mapped["calendar_id"], mapped["event_id"])
            ctx.db.write(DELETE_MAPPING, task_id, link.id)
            ctx.log.info("task event removed from a calendar", task_id=task_id, link_id=link.id)


async def on_unlink(ctx: Context, link: Link) -> bool:
    """Remove the user's task events, stop the link's push channels (best effort: they expire),
    then revoke its grant at Google. A failure refuses the unlink (unless forced): nothing is lost."""
    if link.active:
        for event in await ctx.db.fetch(LINK_EVENTS, link.id):
            await delete_event(ctx, link.id, event["calendar_id"], event["event_id"])
            ctx.db.write(DELETE_MAPPING, event["task_id"], link.id)
        channels = await ctx.db.fetch(
            "SELECT id, resource_id FROM google_calendar_channels WHERE team_id = $1 AND link_id = $2", link.id
        )
        for channel in channels:
            await stop_channel(ctx, link.id, channel["id"], channel["resource_id"])
    return await revoke(ctx, link, refresher(ctx))
