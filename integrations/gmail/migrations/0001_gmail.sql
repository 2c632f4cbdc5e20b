-- Gmail: per linked mailbox, the history cursor and the watch; every message looked at, with
-- what became of it (dedup across overlapping syncs, and the daily intake cap).

CREATE TABLE gmail_mailboxes (
    link_id          text PRIMARY KEY REFERENCES integration_user_link (id) ON DELETE CASCADE,
    team_id          text NOT NULL,
    integration_id   text NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    email            text NOT NULL,
    history_id       numeric(20),          -- the cursor: history after it is not processed yet
    watch_expires_at timestamptz,
    watch_renewed_at timestamptz,
    last_synced_at   timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gmail_mailboxes_team_idx ON gmail_mailboxes (team_id);

CREATE TABLE gmail_messages (
    link_id        text NOT NULL REFERENCES integration_user_link (id) ON DELETE CASCADE,
    message_id     text NOT NULL,           -- Gmail's message id in that mailbox
    team_id        text NOT NULL,
    integration_id text NOT NULL,
    thread_id      text,
    outcome        text NOT NULL CHECK (outcome IN ('accepted', 'skipped')),
    reason         text,                    -- why skipped: promotions, sender_denied, daily_cap, ...
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, message_id)
);
CREATE INDEX gmail_messages_accepted_idx ON gmail_messages (link_id, processed_at) WHERE outcome = 'accepted';
CREATE INDEX gmail_messages_team_idx ON gmail_messages (team_id);
