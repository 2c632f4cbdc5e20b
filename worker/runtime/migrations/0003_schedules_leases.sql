-- Periodic jobs run by one worker at a time (worker/schedules.py), and short exclusive leases
-- held by a handler until its outcome commits (worker/leases.py).

CREATE TABLE schedules (
    name          text PRIMARY KEY,                 -- <type>.<schedule name>
    every_seconds double precision NOT NULL,
    next_run_at   timestamptz NOT NULL,
    last_run_at   timestamptz,
    last_error    text,
    runs          bigint NOT NULL DEFAULT 0
);

CREATE TABLE leases (
    key        text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);
