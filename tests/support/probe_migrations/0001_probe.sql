CREATE TABLE probe_rows (
    team_id text NOT NULL,
    key     text PRIMARY KEY,
    value   integer NOT NULL CHECK (value >= 0)
);
