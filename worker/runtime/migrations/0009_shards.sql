-- Sharded consuming (worker/runtime/shards.py): the worker processes alive, and the types each
-- consumes, so every worker computes the same split of the shard queues. The outbox keeps the
-- AMQP headers of what it publishes (a command's ordering key, `iw-key`).

CREATE TABLE worker_members (
    id         text PRIMARY KEY,                 -- host/pid/random, one per worker process
    types      text[] NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE outbox ADD COLUMN headers jsonb;
