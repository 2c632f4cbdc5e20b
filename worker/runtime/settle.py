"""Settling a wave of a batch: the messages whose outcome is known, together.

    failed       to the retry or parking queue, confirmed (retry.py); not taken: back to the queue
    committed    one transaction (unit_of_work.py): the runs' inbox ids and staged work, the parked
                 messages' log rows and answers, the answers to repeated calls
    refused      a unit the database refused is parked now, with the database's reason
    settled      one multiple-ack for the wave (acks.py), metrics, a log line; the next message of
                 each settled key may run (admission.py)

When the database is away, nothing of the wave committed: what ran goes to the retry queue (it
runs again), and parked messages are safe on the parking queue with only their log rows lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence

from schemas.envelope import Envelope
from schemas.tools import ToolReply
from worker.core.logging import get_logger
from worker.runtime import metrics, results
from worker.runtime.acks import Acks
from worker.runtime.admission import Admission
from worker.runtime.amqp import AmqpError
from worker.runtime.dispatch import Message, Outcome
from worker.runtime.failures import DB_ERRORS, classify
from worker.runtime.retry import Retrier
from worker.runtime.runtime import Runtime
from worker.runtime.unit_of_work import CONTENTION, Committed, Unit
from worker.sdk.errors import Failure
from worker.sdk.unit import LogEntry, OutboxItem, Staged

_LOG_ERROR_MAX = 2000
RETURN_AFTER = 1.0  # seconds a delivery that goes back to its queue is held first


class Settler:
    def __init__(self, runtime: Runtime, acks: Acks, admission: Admission) -> None:
        self.runtime = runtime
        self.acks = acks
        self.admission = admission
        self.retrier = Retrier(runtime.broker, runtime.topology, runtime.settings)
        self.log = get_logger(component="worker")
        self.debug = self.log.is_enabled_for(logging.DEBUG)

    async def settle(self, wave: list[Message]) -> None:
        failed = [m for m in wave if m.failure is not None]
        if failed:
            for message, outcome in zip(failed, await self.retrier.send(failed), strict=True):
                message.outcome = outcome
        for message in wave:
            if message.outcome is None:
                message.outcome = "success"
        answers = await self._answers_again(wave)
        units = {i: unit for i, message in enumerate(wave) if (unit := self._unit(message, answers)) is not None}
        committed = await self._commit(wave, units)
        for index in committed.raced:
            wave[index].outcome = "duplicate"
        if committed.refused:  # the database refused their writes: parked now, with the reason
            refused = []
            for index, failure in committed.refused.items():
                message = wave[index]
                message.staged.clear()
                if message.outcome in ("parked", "retried"):
                    # already on the parking or a retry queue: only its log row is lost
                    self.log.warning("log row of a parked message refused", error=failure.reason)
                    continue
                message.failure, message.outcome = failure, None
                refused.append(message)
            await self._park_refused(refused)
        self._finish(wave)

    async def _commit(self, wave: Sequence[Message], units: dict[int, Unit]) -> Committed:
        if not units:
            return Committed()
        order = list(units)
        try:
            committed = await self.runtime.unit_of_work.commit([units[i] for i in order])
        except CONTENTION as exc:
            self._contended(wave, exc)
            return Committed()
        except DB_ERRORS as exc:
            await self._database_away(wave, classify(exc))
            return Committed()
        metrics.COMMIT_BATCH.observe(len(order))
        return Committed(
            raced={order[i] for i in committed.raced},
            refused={order[i]: failure for i, failure in committed.refused.items()},
        )

    def _unit(self, message: Message, answers: dict[int, OutboxItem]) -> Unit | None:
        """What the wave commits for `message`: its run (with its inbox id), or its log row and
        answer (parked), or the answer to a caller of a call that already ran."""
        envelope, outcome, delivery = message.envelope, message.outcome, message.delivery
        if outcome in ("success", "skipped_inactive") and envelope is not None:
            return Unit(message.staged, envelope.id, envelope.type)
        if outcome == "duplicate" and id(message) in answers:
            return Unit(Staged(outbox=[answers[id(message)]]))
        if outcome != "parked":
            return None
        staged = Staged()
        reason = message.failure.reason if message.failure else "parked"
        if envelope is not None and message.record is not None:
            staged.logs.append(self._parked_row(message, envelope, message.record.id, message.record.team_id, reason))
        if envelope is not None and results.is_action(self.runtime.registry, envelope):
            staged.writes.append(results.failed(envelope, reason))
        if delivery.reply_to:
            reply = ToolReply(ok=False, status="failed", error=reason)
            staged.outbox.append(results.reply_item(envelope, delivery.reply_to, delivery.correlation_id, reply))
        return None if staged.empty else Unit(staged)

    @staticmethod
    def _parked_row(message: Message, envelope: Envelope, integration_id: str, team_id: str, reason: str) -> LogEntry:
        details: dict[str, object] = {
            "routing_key": envelope.routing_key,
            "attempts": envelope.attempt + 1,
            "error_kind": message.failure.kind if message.failure else "permanent",
        }
        if message.bug is not None:
            details["traceback"] = message.bug
        return LogEntry(
            integration_id,
            team_id,
            "error",
            "message_parked",
            reason[:_LOG_ERROR_MAX],
            envelope.id,
            details,
            None,
            round(message.handler_seconds * 1000),
        )

    async def _answers_again(self, wave: Sequence[Message]) -> dict[int, OutboxItem]:
        """A call id that came again with a caller waiting: the stored answer, nothing run."""
        answers: dict[int, OutboxItem] = {}
        for message in wave:
            envelope, reply_to = message.envelope, message.delivery.reply_to
            if message.outcome != "duplicate" or envelope is None or not reply_to:
                continue
            try:
                stored = await results.get(self.runtime.pool, envelope.id)
            except DB_ERRORS:
                continue  # the caller can ask for the result by call id
            reply = results.duplicate_reply(stored, envelope)
            answers[id(message)] = results.reply_item(
                envelope, reply_to, message.delivery.correlation_id, reply, again=True
            )
        return answers

    async def _database_away(self, wave: Sequence[Message], failure: Failure) -> None:
        """Nothing of the wave committed: what ran goes to the retry queue (it runs again);
        parked messages are safe on the parking queue, only their log rows are lost."""
        again = [m for m in wave if m.outcome in ("success", "skipped_inactive")]
        for message in again:
            message.staged.clear()
            message.failure, message.outcome = failure, None
        if again:
            for message, outcome in zip(again, await self.retrier.send(again), strict=True):
                message.outcome = outcome
        self.log.warning(
            "database unavailable; the wave goes to the retry queue", error=failure.reason, messages=len(again)
        )

    def _contended(self, wave: Sequence[Message], exc: BaseException) -> None:
        """The wave stayed contended through every try: what ran goes back to its queue (no attempt
        counted, its key's order kept) and runs again; contention is not an outage."""
        again = [m for m in wave if m.outcome in ("success", "skipped_inactive")]
        for message in again:
            message.staged.clear()
            message.outcome = None
        self.log.warning("contended; the wave runs again", error=type(exc).__name__, messages=len(again))

    async def _park_refused(self, refused: list[Message]) -> None:
        if not refused:
            return
        for message, outcome in zip(refused, await self.retrier.send(refused), strict=True):
            message.outcome = outcome
        units = [unit for message in refused if (unit := self._unit(message, {})) is not None]
        try:
            await self.runtime.unit_of_work.commit(units)
        except DB_ERRORS as exc:
            self.log.warning("log rows of refused messages not written", error=str(exc))

    def _finish(self, wave: Sequence[Message]) -> None:
        acks = self.acks
        now = time.perf_counter()
        outcomes: Counter[tuple[str, str]] = Counter()
        returned: list[Message] = []
        settled: list[tuple[Message, bool]] = []
        for message in wave:
            if message.settled:
                continue
            message.settled = True
            delivery = message.delivery
            outcome: Outcome = message.outcome or "returned"
            if outcome == "returned":
                returned.append(message)
            else:
                acks.ack(delivery.channel, delivery.tag)
            settled.append((message, outcome == "returned"))
            outcomes[(message.queue_type, outcome)] += 1
            self._log(message, outcome, now)
        acks.flush()
        for message, back in settled:  # after the acks went out: the next of each key may run
            self.admission.settled(message, returned=back)
        if returned:
            # Back to the queue after a pause, not at once: what could not be made durable (the
            # broker's publisher or the database away) would otherwise run again in a tight loop.
            asyncio.get_running_loop().call_later(RETURN_AFTER, self._requeue, returned)
        by_outcome: Counter[str] = Counter()
        by_type: Counter[str] = Counter()
        for (type_, name), count in outcomes.items():
            metrics.count(type_, name, count)
            by_outcome[name] += count
            by_type[type_] += count
        for type_, count in by_type.items():  # settled: no longer in flight (worker.py counted them in)
            metrics.child(metrics.IN_FLIGHT, type_).dec(count)
        if outcomes:
            slowest = max(now - m.received for m in wave)
            self.log.info(
                "wave settled", outcomes=dict(by_outcome), messages=len(wave), slowest_ms=round(slowest * 1000, 2)
            )

    def _requeue(self, messages: list[Message]) -> None:
        """Each returned message back to its queue, followed by those of its key that waited behind
        it here, in order: the broker delivers them again in that order."""
        for message in messages:
            behind = self.admission.take_returning(message)
            with contextlib.suppress(AmqpError):  # a channel closed meanwhile: the broker redelivers anyway
                for each in (message, *behind):
                    self.acks.reject(each.delivery.channel, each.delivery.tag, requeue=True)
        with contextlib.suppress(AmqpError):
            self.acks.flush()

    def _log(self, message: Message, outcome: Outcome, now: float) -> None:
        if outcome in ("success", "duplicate", "ignored", "skipped_inactive") and not self.debug:
            return
        envelope = message.envelope
        fields = {
            "event_id": message.id,
            "type": message.queue_type,
            "name": envelope.name if envelope else None,
            "team_id": message.team_id,
            "outcome": outcome,
            "duration_ms": round((now - message.received) * 1000, 2),
        }
        if outcome in ("parked", "retried", "returned"):
            reason = message.failure.reason if message.failure else None
            (self.log.error if outcome == "parked" else self.log.warning)("message", **fields, reason=reason)
        elif self.debug:
            self.log.debug("message", **fields, handler_ms=round(message.handler_seconds * 1000, 2))

    def give_back(self, batch: Sequence[Message]) -> None:
        """After a bug of the worker's own: every message of the batch not settled yet goes back
        to its queue (a crash loop ends parked by the queue's delivery limit), except those
        already on a retry or the parking queue (acknowledged: that copy carries on)."""
        unsettled = [m for m in batch if not m.settled]
        for message in unsettled:
            if message.outcome not in ("retried", "parked"):
                message.outcome = None
        self._finish(unsettled)
