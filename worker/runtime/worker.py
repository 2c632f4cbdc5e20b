"""The worker: take its share of the shard queues (worker/runtime/shards.py), consume them
(worker/runtime/consume.py), admit what it read ahead key by key and team by team
(worker/runtime/admission.py), and run each batch through the pipeline (worker/runtime/pipeline.py)
while the next ones arrive.

    shards --> deliveries --> admission (keys, teams) --> batches --> dispatch --> execute
           --> retry / park --> unit of work --> ack --> the next message of the key

On SIGTERM (`stop`) the worker leaves the members (the others take its shards at their next
beat), admits nothing more, lets in-flight batches finish within IW_SHUTDOWN_GRACE, gives their
result events a moment to go out (the outbox relay sends the rest), and closes its connection:
the broker takes back what it had not acknowledged, in order, and hands each shard to the next
worker; the inbox turns repeats of committed work into duplicates.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from worker.core.logging import get_logger
from worker.runtime import metrics
from worker.runtime.acks import Acks
from worker.runtime.admission import Admission
from worker.runtime.consume import Intake
from worker.runtime.dispatch import Message
from worker.runtime.fences import Fences
from worker.runtime.pipeline import Pipeline
from worker.runtime.runtime import Runtime
from worker.runtime.shards import Membership


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        *,
        types: Sequence[str] | None = None,
        concurrency: int | None = None,
        prefetch: int | None = None,
    ) -> None:
        self.runtime = runtime
        settings = runtime.settings
        known = runtime.registry.types()
        self.types = tuple(types) if types else known
        unknown = [t for t in self.types if t not in known]
        if unknown:
            raise ValueError(f"unknown integration types: {', '.join(unknown)} (known: {', '.join(known)})")
        self.concurrency = concurrency or settings.concurrency
        self.prefetch = prefetch or settings.prefetch
        self.acks = Acks(max_held=max(16, min(self.prefetch, self.concurrency) // 4))
        self.admission = Admission(
            capacity=self.concurrency,
            batch_size=min(settings.batch_size, self.concurrency),
            linger=settings.batch_linger,
            start_batch=self._start_batch,
        )
        self.pipeline = Pipeline(runtime, self.acks, self.admission)
        self.fences = Fences(lambda: runtime.pool, self.acks, timeout=settings.fence_timeout, release=self._released)
        self.intake = Intake(
            runtime.broker,
            runtime.topology,
            runtime.registry,
            self.admission,
            self.acks,
            fences=self.fences,
            prefetch=self.prefetch,
            types=self.types,
        )
        self.membership = Membership(
            lambda: runtime.pool,
            runtime.topology,
            self.types,
            interval=settings.rebalance_interval,
            ttl=settings.worker_ttl,
            apply=self.intake.own,
        )
        self._batches: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._consuming = False
        runtime.consuming = self._status
        self.log = get_logger(component="worker")

    async def start(self) -> None:
        self.fences.start()
        await self.intake.start()
        await self.membership.start()  # this worker's shards, before start returns
        legacy = await self.runtime.broker.legacy_queues(self.types)
        if legacy:
            self.log.warning("draining the unsharded queues of an earlier version", queues=legacy)
            await self.intake.drain(legacy)
        for type_ in self.types:
            metrics.child(metrics.WAITING, type_).set_function(lambda t=type_: self.admission.waiting_of(t))
        self._consuming = True
        self.log.info(
            "worker consuming",
            types=list(self.types),
            shards=sorted(self.intake.owned()),
            member=self.membership.id,
            concurrency=self.concurrency,
            prefetch=self.prefetch,
            batch_size=self.admission.batch_size,
        )

    def _status(self) -> dict[str, dict[str, int]] | None:
        """Per type, the shards this worker owns and those it consumes; None until it consumes."""
        return self.intake.status() if self._consuming else None

    def _released(self, message: Message) -> None:
        self.intake.released(message)

    def _start_batch(self, batch: list[Message]) -> None:
        for type_, size in Counter(m.queue_type for m in batch).items():
            metrics.child(metrics.IN_FLIGHT, type_).inc(size)
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._batches.add(task)
        self._idle.clear()
        task.add_done_callback(self._batch_done)

    async def _run(self, batch: list[Message]) -> None:
        try:
            await self.pipeline.run(batch)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug of the worker itself: what it had not settled goes back to the queue
            self.log.exception("batch failed; its unsettled messages go back to the queue")
            self.pipeline.give_back(batch)
        finally:  # each message leaves iw_in_flight when settled (settle.py); the rest, unsettled, now
            for type_, size in Counter(m.queue_type for m in batch if not m.settled).items():
                metrics.child(metrics.IN_FLIGHT, type_).dec(size)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        if not self._batches:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Until no batch is in flight (tests: after publishing, everything was handled)."""
        await self._idle.wait()

    async def stop(self) -> None:
        """Leave the members, admit nothing more, let in-flight work finish (bounded), close."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        settings = self.runtime.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.shutdown_grace
        await self.membership.stop()
        self.admission.pause()
        returned = self.intake.stop_receiving()
        self.acks.flush()
        if self._batches:
            _, late = await asyncio.wait(set(self._batches), timeout=settings.shutdown_grace)
            if late:
                self.log.warning("shutdown grace elapsed; unfinished messages will be redelivered", batches=len(late))
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        await self.runtime.outbox.drain(deadline - loop.time())
        await self.fences.stop()
        await self.intake.close()
        for type_ in self.types:
            metrics.child(metrics.SHARDS_OWNED, type_).set(0)
        self.log.info("worker stopped", returned=returned)
        self._stopped.set()
