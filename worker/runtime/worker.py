"""The worker: consume (worker/runtime/consume.py), and run each batch through the pipeline
(worker/runtime/pipeline.py) while the next ones arrive.

    deliveries --> batches --> dispatch --> execute --> retry / park --> unit of work --> ack

On SIGTERM (`stop`) the worker stops consuming, sends back to the queue what it had not started,
lets in-flight batches finish within IW_SHUTDOWN_GRACE, gives their result events a moment to
go out (the outbox relay sends the rest), and closes its connection: whatever was still not
acknowledged is redelivered by the broker and deduplicated by the inbox.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from worker.core.logging import get_logger
from worker.runtime import metrics
from worker.runtime.acks import Acks
from worker.runtime.consume import Intake
from worker.runtime.dispatch import Message
from worker.runtime.pipeline import Pipeline
from worker.runtime.runtime import Runtime


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
        self.prefetch = max(prefetch or settings.prefetch, settings.batch_size)
        self.acks = Acks(max_held=max(16, self.prefetch // 4))
        self.pipeline = Pipeline(runtime, self.acks, concurrency=self.concurrency)
        self.intake = Intake(
            runtime.broker,
            {runtime.topology.queue(t): t for t in self.types},
            prefetch=self.prefetch,
            batch_size=settings.batch_size,
            linger=settings.batch_linger,
            acks=self.acks,
            on_batch=self._start_batch,
        )
        self._batches: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._stopped = asyncio.Event()
        self.log = get_logger(component="worker")

    async def start(self) -> None:
        await self.intake.start()
        self.log.info(
            "worker consuming",
            types=list(self.types),
            concurrency=self.concurrency,
            prefetch=self.prefetch,
            batch_size=self.runtime.settings.batch_size,
        )

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
        """Stop consuming, let in-flight work finish (bounded), leave the rest for redelivery."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        settings = self.runtime.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.shutdown_grace
        returned = await self.intake.stop_receiving()
        self.acks.flush()
        if self._batches:
            _, late = await asyncio.wait(set(self._batches), timeout=settings.shutdown_grace)
            if late:
                self.log.warning("shutdown grace elapsed; unfinished messages will be redelivered", batches=len(late))
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        await self.runtime.outbox.drain(deadline - loop.time())
        await self.intake.close()
        self.log.info("worker stopped", returned=returned)
        self._stopped.set()
