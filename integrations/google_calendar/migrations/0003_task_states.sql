-- The newest state of each task the platform synced (what `sync_task` carried): a user who turns
-- `syncEvents` on gets the events of the tasks they follow without the platform sending them again.
-- Once the platform says a task is deleted, its row is a tombstone (`deleted_at`): a late or
-- repeated sync of that task cannot bring its events back.

CREATE TABLE google_calendar_tasks (
    team_id        text NOT NULL,
    task_id        text NOT NULL,
    integration_id text NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    task           jsonb,                          -- the last sync_task payload applied; NULL once deleted
    subscribers    text[] NOT NULL DEFAULT '{}',   -- its platform user ids, for `@>` look-ups
    has_due_date   boolean NOT NULL DEFAULT false,
    deleted_at     timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, task_id)
);
CREATE INDEX google_calendar_tasks_subscribers_idx ON google_calendar_tasks USING gin (subscribers);
