-- Core tables: MIMRAI's integrations, integration_user_link and integration_logs (same columns,
-- plus status, team scoping, token expiry and durations), the inbox of processed ids and the
-- outbox of result events.

CREATE TABLE integrations (
    id               text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    team_id          text NOT NULL,
    external_team_id text,
    name             text NOT NULL,
    type             text NOT NULL,
    config           jsonb NOT NULL DEFAULT '{}'::jsonb,      -- secrets inside are encrypted
    status           text NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'suspended', 'uninstalled', 'revoked')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- One integration per provider account; one per team and type when there is no provider account.
CREATE UNIQUE INDEX integrations_type_external_team_key
    ON integrations (type, external_team_id) WHERE external_team_id IS NOT NULL;
CREATE UNIQUE INDEX integrations_team_type_key
    ON integrations (team_id, type) WHERE external_team_id IS NULL;
CREATE INDEX integrations_team_idx ON integrations (team_id);

CREATE TABLE integration_user_link (
    id                 text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    user_id            text NOT NULL,
    team_id            text,
    external_user_id   text NOT NULL,
    external_user_name text,
    integration_id     text REFERENCES integrations (id) ON DELETE CASCADE,
    mcp_server_id      text,
    integration_type   text,
    access_token       text,                                  -- encrypted
    refresh_token      text,                                  -- encrypted
    token_expires_at   timestamptz,
    config             jsonb NOT NULL DEFAULT '{}'::jsonb,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'needs_reconnect')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- An external account maps to one platform user per integration (MIMRAI only had
-- (integration_id, user_id, external_user_id), which let one account match several users).
CREATE UNIQUE INDEX integration_user_link_external_key
    ON integration_user_link (integration_id, external_user_id);
CREATE UNIQUE INDEX unique_mcp_server_user
    ON integration_user_link (mcp_server_id, user_id, external_user_id) WHERE mcp_server_id IS NOT NULL;
CREATE INDEX integration_user_link_type_external_idx ON integration_user_link (integration_type, external_user_id);
CREATE INDEX integration_user_link_user_idx ON integration_user_link (user_id, team_id);

CREATE TYPE integration_logs_level AS ENUM ('info', 'warning', 'error');

CREATE TABLE integration_logs (
    id                       text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    key                      text NOT NULL,
    integration_id           text NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    team_id                  text,
    level                    integration_logs_level NOT NULL,
    message                  text NOT NULL,
    integration_user_link_id text REFERENCES integration_user_link (id) ON DELETE SET NULL,
    event_id                 text,
    details                  jsonb,
    duration_ms              integer,
    input_tokens             integer,
    output_tokens            integer,
    created_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX integration_logs_integration_idx ON integration_logs (integration_id, created_at DESC);

-- The inbox: ids whose handler ran to success, written in the handler's transaction.
CREATE TABLE processed_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);

-- The outbox: result events and replies written with the handler's rows, published after commit.
CREATE TABLE outbox (
    id             text PRIMARY KEY,
    exchange       text NOT NULL,            -- 'results', or '' for a reply to a reply queue
    routing_key    text NOT NULL,
    body           bytea NOT NULL,
    correlation_id text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_created_at_idx ON outbox (created_at);
