-- Lanes (worker/runtime/lanes.py): the fences a worker has seen, per shard, so that the worker
-- that takes a shard over knows which of a team's lane switches are behind it.
CREATE TABLE lane_fences (
    shard   text NOT NULL,            -- <type>/<index>
    source  text NOT NULL,            -- the ingress process that switched the team's lane
    tenant  text NOT NULL,
    epoch   integer NOT NULL,         -- the lane of this epoch is behind (its fence was read)
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard, source, tenant, epoch)
);
