"""One batch through the worker, in waves:

    dispatch    decode every delivery; one look-up for the inbox and the integrations; route
                each message (a batch holds one message per key: admission.py sees to it)
    execute     the runnable ones concurrently
    wave        when all are done, or every IW_STRAGGLER_WAIT seconds with the ones done by then:
                failures to the retry or parking queue (confirmed), then one transaction for the
                wave (worker/runtime/unit_of_work.py), then one multiple-ack for it all, and the
                next message of each settled key may run

Every delivery is settled exactly once: acknowledged once what it caused is durable (committed,
or confirmed on a retry or parking queue), or rejected back to its queue when that could not be
made durable (the database or the broker away).
"""

from __future__ import annotations

import asyncio

from worker.core.logging import get_logger
from worker.core.settings import Settings
from worker.runtime import dispatch, metrics, results
from worker.runtime.acks import Acks
from worker.runtime.admission import Admission
from worker.runtime.dispatch import Message
from worker.runtime.execute import execute
from worker.runtime.failures import DB_ERRORS, classify
from worker.runtime.runtime import Runtime
from worker.runtime.settle import Settler
from worker.sdk.context import Context
from worker.sdk.unit import LogEntry


class Pipeline:
    def __init__(self, runtime: Runtime, acks: Acks, admission: Admission) -> None:
        self.runtime = runtime
        self.settings: Settings = runtime.settings
        self.settler = Settler(runtime, acks, admission)
        self.log = get_logger(component="worker")

    async def run(self, batch: list[Message]) -> None:
        settled: list[Message] = []
        ready: list[Message] = []
        loop = asyncio.get_running_loop()
        for message in batch:
            if dispatch.decode(message):
                ready.append(message)
            else:
                settled.append(message)  # poison: parked as it is
        tasks: set[asyncio.Task[Message]] = set()
        try:
            runnable = await self._route(ready, settled)
            tasks.update(loop.create_task(self._execute(m)) for m in runnable)
            wave = settled
            while True:
                if tasks:
                    done, tasks = await asyncio.wait(tasks, timeout=self.settings.straggler_wait)
                    wave = wave + [task.result() for task in done]
                if wave:
                    await self.settler.settle(wave)
                    wave = []
                if not tasks:
                    return
        except BaseException:
            # Shut down, or a bug of the worker's own: no handler of this batch outlives it (its
            # messages go back to the queue, and must not run beside their redelivery).
            for task in tasks:
                task.cancel()
            raise

    async def _route(self, ready: list[Message], settled: list[Message]) -> list[Message]:
        if not ready:
            return []
        runtime = self.runtime
        try:
            async with runtime.reads.acquire() as conn:
                found = await dispatch.look_up(conn, [m.envelope for m in ready if m.envelope is not None])
        except DB_ERRORS as exc:
            failure = classify(exc)
            for message in ready:
                message.failure = failure
            settled.extend(ready)
            return []
        runnable = []
        for message in ready:
            outcome = dispatch.route(message, found, runtime.registry, runtime.records)
            if outcome is None:
                runnable.append(message)
                continue
            if outcome == "skipped_inactive":
                self._skip_inactive(message)
            if message.failure is None:
                message.outcome = outcome
            settled.append(message)
        return runnable

    def _skip_inactive(self, message: Message) -> None:
        envelope, record = message.envelope, message.record
        assert envelope is not None and record is not None
        reason = f"integration is {record.status}"
        message.staged.logs.append(LogEntry(record.id, record.team_id, "info", "skipped_inactive", reason, envelope.id))
        if results.is_action(self.runtime.registry, envelope):
            results.stage_refusal(
                message.staged,
                envelope,
                reply_to=message.delivery.reply_to,
                correlation_id=message.delivery.correlation_id,
                team_id=record.team_id,
                integration_id=record.id,
                reason=reason,
            )

    async def _execute(self, message: Message) -> Message:
        envelope = message.envelope
        assert envelope is not None
        delivery = message.delivery
        ctx = Context(
            self.runtime.backend,
            envelope.type,
            envelope=envelope,
            integration=message.record,
            staged=message.staged,
            reply_to=delivery.reply_to,
            correlation_id=delivery.correlation_id,
            redelivered=delivery.redelivered,
        )
        await execute(message, ctx, seconds=self.settings.handler_timeout)
        metrics.observe_handler(envelope.type, message.handler_seconds)
        return message

    def give_back(self, batch: list[Message]) -> None:
        """After a bug of the worker's own: every message of the batch not settled yet goes back
        to its queue (a crash loop ends parked by the queue's delivery limit)."""
        self.settler.give_back(batch)
