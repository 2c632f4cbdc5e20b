-- OAuth flows: one row per start, claimed by the first browser that follows its link (a cookie
-- binds that browser, stored as its SHA-256), used once by the callback. The PKCE verifier is
-- encrypted like every secret. Expired rows are pruned.
CREATE TABLE oauth_flows (
    id              text PRIMARY KEY,
    type            text NOT NULL,
    team_id         text NOT NULL,
    user_id         text,
    integration_id  text,
    return_to       text,
    code_verifier   text NOT NULL,
    browser         text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    claimed_at      timestamptz,
    used_at         timestamptz
);
CREATE INDEX oauth_flows_expires_at ON oauth_flows (expires_at);

-- Account-link tokens already used (by their SHA-256): a token links once.
CREATE TABLE used_link_tokens (
    token_hash  text PRIMARY KEY,
    team_id     text NOT NULL,
    user_id     text NOT NULL,
    used_at     timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX used_link_tokens_expires_at ON used_link_tokens (expires_at);
