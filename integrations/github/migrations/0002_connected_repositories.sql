-- Repositories a team connected (MIMRAI's github_repository_connected, with BIGINT ids): their open
-- pull requests were backfilled when connected. Kept apart from github_repositories, which follows
-- what the installation reaches and is replaced on an `installation` event.

CREATE TABLE github_connected_repositories (
    integration_id text NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    team_id        text NOT NULL,
    repository_id  bigint NOT NULL,
    full_name      text NOT NULL,
    connected_by   text,                 -- the platform user who connected it (x-user-id), if known
    connected_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, repository_id)
);
