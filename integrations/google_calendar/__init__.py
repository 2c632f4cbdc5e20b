"""Google Calendar: tasks kept as events in their subscribers' calendars, calendar changes
reported back (push channels + incremental sync), and event actions for agents, as each
linked user with their own OAuth tokens."""

from pathlib import Path

from integrations.google_calendar import channels, events, handle, user_links
from integrations.google_calendar.config import SCOPES, CalendarConfig, CalendarLinkConfig, CalendarSettings
from integrations.google_common.oauth import GoogleOAuthFlow
from worker.sdk import Action, Integration, Lifecycle, Schedule, UserLinks, payload_key, unordered

integration = Integration(
    type="google-calendar",
    name="Google Calendar",
    description="Tasks with a due date appear in subscribers' calendars; calendar changes come back as events.",
    config=CalendarConfig,
    settings=CalendarSettings,
    webhook=channels.receive,
    handlers=handle.HANDLERS,
    actions=[
        Action(
            "create_event",
            "Create an event in the user's Google Calendar.",
            events.CreateEventInput,
            events.CalendarEvent,
            events.create_event,
            needs_user_link=True,
            key=unordered,
        ),
        Action(
            "update_event",
            "Change some fields of an event in the user's Google Calendar (the others stay).",
            events.UpdateEventInput,
            events.CalendarEvent,
            events.update_event,
            needs_user_link=True,
            key=payload_key("event_id"),
        ),
        Action(
            "delete_event",
            "Delete an event from the user's Google Calendar.",
            events.DeleteEventInput,
            events.DeleteEventOutput,
            events.delete_event,
            needs_user_link=True,
            key=payload_key("event_id"),
        ),
        Action(
            "list_events",
            "List events of the user's Google Calendar.",
            events.ListEventsInput,
            events.ListEventsOutput,
            events.list_events,
            needs_user_link=True,
            key=unordered,
        ),
    ],
    lifecycle=Lifecycle(post_install=channels.post_install, pre_uninstall=channels.pre_uninstall),
    oauth=GoogleOAuthFlow(
        CalendarSettings,
        SCOPES,
        # no link_config: a user's own settings (syncEvents) survive connecting again; absent means the default
        after_link=channels.after_link,
    ),
    user_links=UserLinks(
        config=CalendarLinkConfig, on_config_change=user_links.on_config_change, on_unlink=user_links.on_unlink
    ),
    schedules=[Schedule("renew_channels", CalendarSettings().schedule_every_seconds, channels.renew_due)],
    migrations=Path(__file__).with_name("migrations"),
)
