-- GitHub: the repositories an installation reaches, and pull requests kept in step
-- (MIMRAI's pr_reviews, with BIGINT ids).

CREATE TABLE github_repositories (
    integration_id text NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    team_id        text NOT NULL,
    repository_id  bigint NOT NULL,
    full_name      text NOT NULL,
    private        boolean NOT NULL DEFAULT false,
    added_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, repository_id)
);

CREATE TYPE github_pr_status AS ENUM
    ('pending', 'closed', 'approved', 'changes_requested', 'reviewed', 'review_requested');

CREATE TABLE github_pull_requests (
    id             text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    integration_id text NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    team_id        text NOT NULL,
    external_id    bigint NOT NULL,                 -- GitHub's pull request id
    repository_id  bigint NOT NULL,
    repository     text NOT NULL,                   -- owner/name
    number         bigint NOT NULL,
    title          text NOT NULL,
    body           text,
    state          text NOT NULL,
    draft          boolean NOT NULL DEFAULT false,
    merged         boolean NOT NULL DEFAULT false,
    status         github_pr_status NOT NULL,
    url            text NOT NULL,
    author_login   text,
    assignees      jsonb NOT NULL DEFAULT '[]'::jsonb,   -- [{name, avatarUrl, userId}]
    reviewers      jsonb NOT NULL DEFAULT '[]'::jsonb,
    magic_actions  jsonb NOT NULL DEFAULT '[]'::jsonb,   -- ["ABC-12:done", ...] already published
    updated_at     timestamptz NOT NULL,                 -- GitHub's, orders out-of-order events
    synced_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (integration_id, external_id)
);
-- No index on team_id alone: every query names the integration (and the team, for scoping), and
-- on a fresh table a team_id index lures generic plans into reading the whole team per lookup.
