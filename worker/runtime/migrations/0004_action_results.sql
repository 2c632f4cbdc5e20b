-- The answer of every action call (a command `<type>.command.<action>`), by its envelope id, which
-- is the call's idempotency key: the same id again gets this answer without running the action.
-- Numbered 0004 so it sorts after main's 0002_emitted_once and 0003_schedules_leases.
--   succeeded / refused: written in the transaction that records the id in the inbox;
--   failed: written when the call is parked (it may run again: a replay, or the same id again).
CREATE TABLE action_results (
    id             text PRIMARY KEY,
    team_id        text,
    integration_id text,
    type           text NOT NULL,
    action         text NOT NULL,
    status         text NOT NULL CHECK (status IN ('succeeded', 'refused', 'failed')),
    body           jsonb NOT NULL,
    input_hash     text,                     -- sha256 of the call's input: a key reused with other input is refused
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX action_results_created_at_idx ON action_results (created_at);
