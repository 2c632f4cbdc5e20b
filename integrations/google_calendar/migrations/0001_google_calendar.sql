-- Google Calendar: one event per task and linked calendar (the task's UUID is the event id),
-- the incremental sync state of each linked calendar, and its push channels.

CREATE TABLE google_calendar_task_events (
    task_id        text NOT NULL,
    link_id        text NOT NULL REFERENCES integration_user_link (id) ON DELETE CASCADE,
    team_id        text NOT NULL,
    integration_id text NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    calendar_id    text NOT NULL,
    event_id       text NOT NULL,
    etag           text,                    -- of our last write: a notification for it is our own change
    synced_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, link_id)
);
CREATE INDEX google_calendar_task_events_event_idx ON google_calendar_task_events (link_id, event_id);
CREATE INDEX google_calendar_task_events_team_idx ON google_calendar_task_events (team_id, task_id);

CREATE TABLE google_calendar_sync (
    link_id        text PRIMARY KEY REFERENCES integration_user_link (id) ON DELETE CASCADE,
    team_id        text NOT NULL,
    integration_id text NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    calendar_id    text NOT NULL,
    sync_token     text,
    last_synced_at timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE google_calendar_channels (
    id             text PRIMARY KEY,        -- the channel id we chose (X-Goog-Channel-ID)
    link_id        text NOT NULL REFERENCES integration_user_link (id) ON DELETE CASCADE,
    team_id        text NOT NULL,
    integration_id text NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    calendar_id    text NOT NULL,
    resource_id    text NOT NULL,           -- Google's (X-Goog-Resource-ID)
    token_hash     text NOT NULL,           -- SHA-256 of the channel's secret token (X-Goog-Channel-Token)
    expires_at     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX google_calendar_channels_link_idx ON google_calendar_channels (link_id, expires_at);
