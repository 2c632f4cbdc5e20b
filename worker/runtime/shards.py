"""Shards: which worker process consumes which shard queues.

Every worker process is a member: a row of `worker_members` (its id, the types it consumes, a
heartbeat). Every IW_REBALANCE_INTERVAL seconds each member beats and reads the members alive
(a beat within IW_WORKER_TTL), and computes for each of its types the split every other member
computes from the same list: each shard goes to the member that ranks it highest (a hash of
shard and member: few shards move when a member comes or goes) among those not yet full, and
members hold `shards // members` or one more. It consumes its shards and hands the others over
(worker/runtime/consume.py says how).

The broker's single active consumer is what makes one consumer per shard at a time; the split
only decides who should be that one. Members that briefly disagree (one saw a newcomer a beat
before another) cost a second of a shard waiting, never two consumers or an event out of order.

    a worker starts       it joins, takes its part at once (waiting on the broker for the shards
                          others still hold, which they hand over within a beat)
    a worker stops        it leaves at once (SIGTERM): the others take its shards at their next
                          beat, while it finishes what it runs
    a worker dies         (SIGKILL, a machine lost) its beat stops: the others take its shards
                          IW_WORKER_TTL seconds later; the broker has given back what it held
    PostgreSQL away       members keep the shards they have until they can beat again
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.runtime import metrics
from worker.runtime.failures import DB_ERRORS
from worker.runtime.topology import Topology

_BEAT = """
    WITH beat AS (
        INSERT INTO worker_members (id, types) VALUES ($1, $2)
        ON CONFLICT (id) DO UPDATE SET types = EXCLUDED.types, seen_at = now()
    )
    SELECT id, types FROM worker_members
    WHERE id <> $1 AND types && $2 AND seen_at > now() - make_interval(secs => $3)"""
_LEAVE = "DELETE FROM worker_members WHERE id = $1"
_FORGET = "DELETE FROM worker_members WHERE seen_at < now() - interval '1 day'"


def _rank(type_: str, shard: int, member: str) -> int:
    digest = hashlib.blake2b(f"{type_}\x1f{shard}\x1f{member}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(type_: str, shards: int, members: Sequence[str]) -> dict[int, str]:
    """shard -> member, the same on every member given the same members. Balanced: each member
    holds `shards // len(members)` shards or one more; each shard goes to the member that ranks it
    highest among those with room, so a member joining or leaving moves few shards."""
    ordered = sorted(set(members))
    if not ordered:
        return {}
    base, extra = divmod(shards, len(ordered))
    room = {member: base + (1 if i < extra else 0) for i, member in enumerate(ordered)}
    split: dict[int, str] = {}
    for shard in range(shards):
        for member in sorted(ordered, key=lambda m: _rank(type_, shard, m), reverse=True):
            if room[member]:
                room[member] -= 1
                split[shard] = member
                break
    return split


def member_id() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class Membership:
    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        topology: Topology,
        types: Sequence[str],
        *,
        interval: float,
        ttl: float,
        apply: Callable[[set[str]], Awaitable[None]],
    ) -> None:
        self._pool = pool
        self._topology = topology
        self.types = tuple(types)
        self.interval = interval
        self.ttl = ttl
        self._apply = apply
        self.id = member_id()
        self.members: dict[str, list[str]] = {t: [self.id] for t in self.types}  # per type, this one included
        self._task: asyncio.Task[None] | None = None
        self._beats = 0
        self.log = get_logger(component="shards", member=self.id)

    async def start(self) -> None:
        """Join, and take this member's part before returning (the rest follows every beat)."""
        await self._round()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="iw-shards")

    async def stop(self) -> None:
        """Leave at once: the others take the shards at their next beat."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._pool().execute(_LEAVE, self.id)
        except DB_ERRORS as exc:  # it will count as gone after IW_WORKER_TTL
            self.log.warning("could not leave; the others wait for the heartbeat to expire", error=redact(str(exc)))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._round()
            except DB_ERRORS as exc:
                self.log.warning("heartbeat failed; keeping the shards held", error=redact(str(exc)))

    async def _round(self) -> None:
        records = await self._pool().fetch(_BEAT, self.id, list(self.types), self.ttl)
        self._beats += 1
        if self._beats % 3600 == 0:
            await self._pool().execute(_FORGET)
        members: dict[str, list[str]] = {t: [self.id] for t in self.types}
        for record in records:
            for type_ in record["types"]:
                if type_ in members:
                    members[type_].append(record["id"])
        if members != self.members:
            self.log.info("members changed", members={t: len(m) for t, m in members.items()})
        self.members = members
        await self._apply(self.owned())

    def owned(self) -> set[str]:
        """The shard queues this member should consume, from the members it knows."""
        queues: set[str] = set()
        counts: Counter[str] = Counter()
        for type_ in self.types:
            split = assign(type_, self._topology.shard_count(type_), self.members[type_])
            for shard, member in split.items():
                if member == self.id:
                    queues.add(self._topology.shard_queue(type_, shard))
                    if type_ in self._topology.laned:  # its bulk lane, consumed with it
                        queues.add(self._topology.shard_queue(type_, shard, bulk=True))
                    counts[type_] += 1
        for type_ in self.types:
            metrics.child(metrics.SHARDS_OWNED, type_).set(counts[type_])
            metrics.child(metrics.WORKERS_SEEN, type_).set(len(self.members[type_]))
        return queues
