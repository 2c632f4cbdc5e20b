-- The ordering probe (tests/test_scale_out.py): each key's versions as the handler saw them.
CREATE TABLE probe_versions (
    team_id text NOT NULL,
    key     text PRIMARY KEY,
    version integer NOT NULL
);
CREATE TABLE probe_applied (       -- one row per version applied: a second run is refused
    team_id text NOT NULL,
    key     text NOT NULL,
    version integer NOT NULL,
    worker  text NOT NULL,
    PRIMARY KEY (key, version)
);
CREATE TABLE probe_out_of_order (  -- a version that came after a newer one of its key
    team_id text NOT NULL,
    key     text NOT NULL,
    version integer NOT NULL,
    seen    integer NOT NULL
);
