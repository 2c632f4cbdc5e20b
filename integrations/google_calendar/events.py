"""Actions on the acting user's calendar (envelope header `x-user-id`): create, update (PATCH
with only the fields given, unlike MIMRAI's full replace), delete (already gone counts as
done) and list events. `create_event` uses an event id derived from the command id, so a
retried command finds its event (409) instead of making a second one."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from integrations.email_common.compose import EmailAddress
from integrations.google_calendar.client import calendar, events_path
from integrations.google_calendar.config import CalendarConfig
from integrations.google_common.links import acting_link
from worker.sdk import Context, derived_id


class EventTime(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    date_time: dt.datetime | None = Field(default=None, alias="dateTime", description="A moment (RFC 3339).")
    date: dt.date | None = Field(default=None, description="A day, for all-day events.")
    time_zone: str | None = Field(default=None, alias="timeZone", description="IANA name, e.g. Europe/Paris.")

    @model_validator(mode="after")
    def _one(self) -> EventTime:
        if (self.date_time is None) == (self.date is None):
            raise ValueError("give exactly one of dateTime and date")
        return self

    def google(self) -> dict[str, Any]:
        if self.date_time is not None:
            body: dict[str, Any] = {"dateTime": self.date_time.isoformat()}
            if self.time_zone:
                body["timeZone"] = self.time_zone
            return body
        assert self.date is not None
        return {"date": self.date.isoformat()}


class CalendarEvent(BaseModel):
    id: str
    status: str | None = None
    summary: str | None = None
    description: str | None = None
    location: str | None = None
    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    html_link: str | None = None
    updated: str | None = None

    @classmethod
    def of(cls, body: dict[str, Any]) -> CalendarEvent:
        return cls(
            id=str(body["id"]),
            status=body.get("status"),
            summary=body.get("summary"),
            description=body.get("description"),
            location=body.get("location"),
            start=body.get("start"),
            end=body.get("end"),
            html_link=body.get("htmlLink"),
            updated=body.get("updated"),
        )


class CreateEventInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1, max_length=1024)
    start: EventTime
    end: EventTime
    description: str | None = Field(default=None, max_length=8000)
    location: str | None = Field(default=None, max_length=1024)
    attendees: list[EmailAddress] = Field(default_factory=list, max_length=100)


class UpdateEventInput(BaseModel):
    """Only the fields given change; the others stay as they are."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=1024)
    summary: str | None = Field(default=None, max_length=1024)
    start: EventTime | None = None
    end: EventTime | None = None
    description: str | None = Field(default=None, max_length=8000)
    location: str | None = Field(default=None, max_length=1024)


class DeleteEventInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=1024)


class DeleteEventOutput(BaseModel):
    deleted: bool = Field(description="False when the event was already gone.")


class ListEventsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    time_min: dt.datetime | None = None
    time_max: dt.datetime | None = None
    query: str | None = Field(default=None, max_length=1000)
    max_results: int = Field(default=10, ge=1, le=250)
    order_by: Literal["startTime", "updated"] = "startTime"
    single_events: bool = True
    page_token: str | None = None


class ListEventsOutput(BaseModel):
    events: list[CalendarEvent]
    next_page_token: str | None = None


def _calendar_id(ctx: Context) -> str:
    return ctx.config_as(CalendarConfig).calendar_id


async def create_event(ctx: Context, request: CreateEventInput) -> CalendarEvent:
    link = await acting_link(ctx)
    calendar_id = _calendar_id(ctx)
    event_id = uuid.UUID(derived_id(ctx.envelope.id, "calendar-event")).hex  # base32hex-safe, stable on retries
    body: dict[str, Any] = {
        "id": event_id,
        "summary": request.summary,
        "start": request.start.google(),
        "end": request.end.google(),
    }
    if request.description is not None:
        body["description"] = request.description
    if request.location is not None:
        body["location"] = request.location
    if request.attendees:
        body["attendees"] = [{"email": a} for a in request.attendees]
    response = await calendar(ctx, link.id, "POST", events_path(calendar_id), json=body, ok_statuses=(409,))
    if response.status_code == 409:  # a previous run of this command created it
        response = await calendar(ctx, link.id, "GET", events_path(calendar_id, event_id))
    ctx.record("info", "event_created", f"event created in {link.external_user_id}'s calendar", user_link_id=link.id)
    return CalendarEvent.of(response.json())


async def update_event(ctx: Context, request: UpdateEventInput) -> CalendarEvent:
    link = await acting_link(ctx)
    changes: dict[str, Any] = {}
    for name in ("summary", "description", "location"):
        if name in request.model_fields_set:
            changes[name] = getattr(request, name)
    for name in ("start", "end"):
        value: EventTime | None = getattr(request, name)
        if name in request.model_fields_set and value is not None:
            changes[name] = value.google()
    if not changes:
        response = await calendar(ctx, link.id, "GET", events_path(_calendar_id(ctx), request.event_id))
    else:
        path = events_path(_calendar_id(ctx), request.event_id)
        response = await calendar(ctx, link.id, "PATCH", path, json=changes)
    return CalendarEvent.of(response.json())


async def delete_event(ctx: Context, request: DeleteEventInput) -> DeleteEventOutput:
    link = await acting_link(ctx)
    path = events_path(_calendar_id(ctx), request.event_id)
    response = await calendar(ctx, link.id, "DELETE", path, ok_statuses=(404, 410))
    return DeleteEventOutput(deleted=response.status_code not in (404, 410))


async def list_events(ctx: Context, request: ListEventsInput) -> ListEventsOutput:
    link = await acting_link(ctx)
    params: dict[str, Any] = {
        "maxResults": request.max_results,
        "singleEvents": "true" if request.single_events else "false",
    }
    if request.single_events or request.order_by == "updated":
        params["orderBy"] = request.order_by
    if request.time_min is not None:
        params["timeMin"] = request.time_min.isoformat()
    if request.time_max is not None:
        params["timeMax"] = request.time_max.isoformat()
    if request.query:
        params["q"] = request.query
    if request.page_token:
        params["pageToken"] = request.page_token
    body = (await calendar(ctx, link.id, "GET", events_path(_calendar_id(ctx)), params=params)).json()
    return ListEventsOutput(
        events=[CalendarEvent.of(e) for e in body.get("items") or []], next_page_token=body.get("nextPageToken")
    )
