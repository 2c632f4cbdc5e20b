-- The newest task state applied per task (the platform's `updated_at`), kept even while the task
-- has no event: a sync older than it (a retry or a redelivery arriving late) is skipped.

CREATE TABLE google_calendar_task_versions (
    team_id        text NOT NULL,
    task_id        text NOT NULL,
    integration_id text NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (team_id, task_id)
);
