"""Google Calendar's config (per installed integration) and settings (`IW_GOOGLE_CALENDAR_*`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from integrations.google_common.settings import GoogleSettings
from worker.sdk import Link

SCOPES = ("https://www.googleapis.com/auth/calendar.events",)


class CalendarConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    calendar_id: str = Field(default="primary", alias="calendarId", description="The calendar of each linked user.")
    task_event_minutes: int = Field(
        default=30, ge=1, le=1440, alias="taskEventMinutes", description="Length of a task's event at its due time."
    )
    push_notifications: bool = Field(
        default=True,
        alias="pushNotifications",
        description="Watch linked calendars and publish calendar.event_changed.",
    )


class CalendarLinkConfig(BaseModel):
    """What a linked user changes of their own link (`integration_user_link.config`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sync_events: bool = Field(
        default=True,
        alias="syncEvents",
        description="Tasks this user follows appear as events in their calendar; off removes them.",
    )


def link_settings(link: Link) -> CalendarLinkConfig:
    """The user's settings as their link holds them (the defaults where it holds none, or a value
    written by hand that is not one)."""
    return link.settings_as(CalendarLinkConfig)


class CalendarSettings(GoogleSettings):
    model_config = SettingsConfigDict(env_prefix="IW_GOOGLE_CALENDAR_", env_file=".env", extra="ignore")

    api_url: str = Field(default="https://www.googleapis.com/calendar/v3", description="The Calendar API.")
    webhook_url: str | None = Field(
        default=None,
        description="Where Google sends notifications; default: IW_PUBLIC_URL + /webhooks/google-calendar.",
    )
    channel_ttl_seconds: int = Field(default=7 * 86400, ge=3600, description="Lifetime asked for a push channel.")
    channel_renew_before_seconds: int = Field(default=86400, ge=60, description="Renew a channel this long before.")
    schedule_every_seconds: float = Field(default=3600, gt=0, description="How often due channels are looked for.")
    max_sync_pages: int = Field(default=50, ge=1, description="Pages of 250 events read per sync, at most.")
