"""Fences: the worker's side of a team's lane switch (worker/runtime/lanes.py says why).

A message carrying `iw-lane: <source>:<e>` runs only once this worker has read, on its shard,
the fences of that source and team for every epoch before e; until then it is held here
(unacknowledged, in arrival order). A fence is kept in `lane_fences` (committed, then
acknowledged), so the worker that takes a shard over knows which switches are behind it: a
message it would hold makes it read them again (at most every HOLD_RELOAD seconds a shard). A
message held longer than IW_FENCE_TIMEOUT (a fence that never came: the ingress died mid-switch)
runs anyway, counted in `iw_fence_timeouts_total` and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import asyncpg

from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.runtime import amqp, metrics
from worker.runtime.acks import Acks
from worker.runtime.dispatch import Message
from worker.runtime.failures import DB_ERRORS

FLUSH_EVERY = 0.05  # seconds between writes of the fences read
HOLD_RELOAD = 0.5  # seconds between reads of a shard's recorded fences while it holds messages

_RECORD = """
    INSERT INTO lane_fences (shard, source, tenant, epoch)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])
    ON CONFLICT DO NOTHING"""
_LOAD = "SELECT source, tenant, epoch FROM lane_fences WHERE shard = $1"
_FORGET = "DELETE FROM lane_fences WHERE seen_at < now() - interval '7 days'"


@dataclass
class _Line:
    """One source's switches of one team, on one shard: the fences read, the messages held."""

    seen: set[int] = field(default_factory=set)
    held: list[tuple[int, Message, float]] = field(default_factory=list)  # (epoch, message, since)

    def passes(self, epoch: int) -> bool:
        return all(e in self.seen for e in range(epoch))


@dataclass
class _Fence:
    shard: str
    source: str
    tenant: str
    epoch: int
    delivery: amqp.Delivery


class Fences:
    def __init__(
        self, pool: Callable[[], asyncpg.Pool], acks: Acks, *, timeout: float, release: Callable[[Message], None]
    ) -> None:
        self._pool = pool
        self._acks = acks
        self.timeout = timeout
        self._release = release
        self._lines: dict[tuple[str, str, str], _Line] = {}  # (shard, source, tenant)
        self._loaded: dict[str, float] = {}  # shard -> when its recorded fences were last read
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._pending: list[_Fence] = []
        self._flushing: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._beats = 0
        self.log = get_logger(component="fences")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._expire(), name="iw-fences")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._write()

    # --- messages ----------------------------------------------------------------------------------------

    def admit(self, message: Message, source: str, epoch: int) -> bool:
        """True: `message` may run now. False: it is held until its fences are read (here, or by
        the worker that held the shard before: read from `lane_fences`)."""
        line = self._line(message.shard, source, message.tenant)
        if not line.held and line.passes(epoch):
            return True
        line.held.append((epoch, message, time.monotonic()))
        self._reload(message.shard)
        return False

    def _reload(self, shard: str) -> None:
        if shard in self._loading or time.monotonic() - self._loaded.get(shard, 0.0) < HOLD_RELOAD:
            return
        task = asyncio.get_running_loop().create_task(self.load(shard), name=f"iw-fences-{shard}")
        self._loading[shard] = task
        task.add_done_callback(lambda _: self._loading.pop(shard, None))

    def _line(self, shard: str, source: str, tenant: str) -> _Line:
        line = self._lines.get((shard, source, tenant))
        if line is None:
            line = self._lines[(shard, source, tenant)] = _Line()
        return line

    def _release_passing(self, shard: str) -> None:
        """Let go, in arrival order, of the held messages of `shard` whose fences are all read."""
        for (line_shard, _, _), line in list(self._lines.items()):
            if line_shard != shard:
                continue
            while line.held and line.passes(line.held[0][0]):
                _, message, _ = line.held.pop(0)
                self._release(message)

    # --- fences ------------------------------------------------------------------------------------------

    def fence(self, shard: str, tenant: str, source: str, epoch: int, delivery: amqp.Delivery) -> None:
        """A fence read: held messages it frees run now; it is acknowledged once recorded."""
        self._line(shard, source, tenant).seen.add(epoch)
        self._pending.append(_Fence(shard, source, tenant, epoch, delivery))
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().call_later(FLUSH_EVERY, self._flush_soon)
        self._release_passing(shard)

    def _flush_soon(self) -> None:
        self._flushing = None
        task = asyncio.get_running_loop().create_task(self._write())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _write(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            await self._pool().execute(
                _RECORD,
                [f.shard for f in pending],
                [f.source for f in pending],
                [f.tenant for f in pending],
                [f.epoch for f in pending],
            )
        except DB_ERRORS as exc:  # unacknowledged: written with the next ones
            self.log.warning("fences not recorded yet", error=redact(str(exc)), count=len(pending))
            self._pending = pending + self._pending
            if self._flushing is None:
                self._flushing = asyncio.get_running_loop().call_later(1.0, self._flush_soon)
            return
        for fence in pending:
            if not fence.delivery.channel.is_closed:
                self._acks.ack(fence.delivery.channel, fence.delivery.tag)
        self._acks.flush()

    # --- shards ------------------------------------------------------------------------------------------

    async def load(self, shard: str) -> None:
        """The fences recorded for `shard` (by the workers that held it before, and this one)."""
        self._loaded[shard] = time.monotonic()
        try:
            rows = await self._pool().fetch(_LOAD, shard)
        except DB_ERRORS as exc:
            self.log.warning("fences of a shard not read; its held messages wait", shard=shard, error=redact(str(exc)))
            return
        for row in rows:
            self._line(shard, row["source"], row["tenant"]).seen.add(row["epoch"])
        self._release_passing(shard)

    def withdraw(self, queues: Iterable[str]) -> None:
        """Forget the held messages of these queues (handed over, or their channel lost)."""
        gone = set(queues)
        for line in self._lines.values():
            line.held = [h for h in line.held if h[1].queue not in gone]

    def unload(self, shard: str) -> None:
        """`shard` is no longer held here: what its next holder reads, it loads again."""
        self._loaded.pop(shard, None)
        for key in [k for k in self._lines if k[0] == shard]:
            del self._lines[key]

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.timeout / 4))
            if self._beats % 3600 == 0:
                with contextlib.suppress(*DB_ERRORS):
                    await self._pool().execute(_FORGET)
            self._beats += 1
            for shard in {key[0] for key, line in self._lines.items() if line.held}:
                self._reload(shard)  # a fence its previous holder recorded meanwhile
            cutoff = time.monotonic() - self.timeout
            for (shard, source, tenant), line in list(self._lines.items()):
                while line.held and line.held[0][2] < cutoff:
                    epoch, message, _ = line.held.pop(0)
                    metrics.child(metrics.FENCE_TIMEOUTS, message.queue_type).inc()
                    self.log.warning(
                        "a lane switch's fence never came; the message runs",
                        shard=shard,
                        source=source,
                        tenant=tenant,
                        epoch=epoch,
                    )
                    self._release(message)
