-- Keys of events that must be published at most once (ctx.emit(..., once=key)). Claimed in the
-- transaction that writes the event to the outbox; the unique key decides between concurrent
-- handlers, batches and worker processes.
CREATE TABLE emitted_once (
    key        text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
