"""The worker: consume, run handlers, commit, acknowledge.

    deliveries --> dispatch (one query: already processed? one query: integrations)
               --> handlers, at most `concurrency` at once, each with a timeout
               --> commit: outcomes that finished meanwhile go in one transaction
                   (inbox ids + staged writes + outbox + log rows), then the outbox is
                   published and the messages acknowledged.

Outcomes:
    success     committed with its inbox id, then acked
    duplicate   its id is in the inbox: acked, handler not run
    transient   republished to the retry queue of the next delay, then acked;
                after the last attempt, parked
    permanent   parked at once (parking queue + integration_logs row), then acked

A message is acknowledged only after what it caused is durable somewhere:
committed in PostgreSQL, or confirmed by the broker on a retry or parking
queue. On SIGTERM the worker stops consuming, lets in-flight work finish
within `shutdown_grace`, and leaves the rest unacknowledged for redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractRobustChannel
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage
from pydantic import ValidationError

from schemas.envelope import Envelope, dumps_envelope
from schemas.rows import IntegrationRow
from worker import action_results, store
from worker.acks import Acks
from worker.broker import BrokerUnavailable, Unroutable
from worker.context import IntegrationRecord, LogEntry, OutboxItem, Staged
from worker.db import Conn
from worker.errors import DB_ERRORS, Failure, PermanentError, _validation_summary, classify
from worker.integration import Handler
from worker.logging import get_logger
from worker.metrics import (
    COMMIT_BATCH,
    DUPLICATES,
    HANDLER_SECONDS,
    IN_FLIGHT,
    PARKED,
    PROCESSED,
    RETRIED,
)
from worker.redact import redact
from worker.runtime import Runtime

Outcome = Literal["success", "duplicate", "ignored", "skipped_inactive", "retried", "parked"]
_MAX_ERROR = 2000
_GROUP_TARGET = 64


@dataclass(slots=True, frozen=True)
class Received:
    """What the worker reads of a delivery. Consuming on the AMQP channel directly, without
    aio-pika's IncomingMessage and the extra task it spawns per message, saves ~6% CPU a message."""

    body: bytes
    channel: RawChannel
    delivery_tag: int | None
    redelivered: bool
    routing_key: str
    message_id: str | None
    reply_to: str | None
    correlation_id: str | None

    @classmethod
    def of(cls, message: DeliveredMessage) -> Received:
        properties = message.header.properties
        return cls(
            message.body,
            message.channel,
            message.delivery_tag,
            bool(message.redelivered),
            message.routing_key or "",
            properties.message_id,
            properties.reply_to,
            properties.correlation_id,
        )


@dataclass
class Delivery:
    message: Received
    queue_type: str
    received: float = field(default_factory=time.perf_counter)
    envelope: Envelope | None = None
    record: IntegrationRecord | None = None
    staged: Staged = field(default_factory=Staged)
    handler_seconds: float = 0.0
    owns_inflight: bool = False
    spawned: bool = False  # handed to a task of its own, which finishes it
    settled: bool = False  # acknowledged or rejected: finishing it again does nothing


@dataclass
class _Done:
    """A finished delivery waiting for the committer: a success to commit, or a park to log."""

    delivery: Delivery
    outcome: Outcome
    log: LogEntry | None = None
    reason: str | None = None


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
        self.settings = runtime.settings
        known = runtime.registry.types()
        self.types = tuple(types) if types else known
        unknown = [t for t in self.types if t not in known]
        if unknown:
            raise ValueError(f"unknown integration types: {', '.join(unknown)} (known: {', '.join(known)})")
        self.concurrency = concurrency or self.settings.concurrency
        self.prefetch = max(prefetch or self.settings.prefetch, self.concurrency)
        self._slots = asyncio.Semaphore(self.concurrency)
        self._pending: deque[Delivery] = deque()
        self._wake = asyncio.Event()
        self._done: asyncio.Queue[_Done] = asyncio.Queue()
        self._committed_outbox: asyncio.Queue[OutboxItem] = asyncio.Queue()
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._channel: AbstractChannel | None = None
        self._consumers: list[tuple[RawChannel, str]] = []
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stopped = asyncio.Event()
        self._unfinished = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.log = get_logger(component="worker")
        self._counters: dict[tuple[str, ...], Any] = {}
        self._acks = Acks(max_held=max(16, self.prefetch // 4))

    def _count(self, metric: Any, *labels: str) -> Any:
        """A metric's child for these labels, looked up once (labels() takes a lock each time)."""
        key = (metric._name, *labels)
        child = self._counters.get(key)
        if child is None:
            child = metric.labels(*labels)
            self._counters[key] = child
        return child

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._channel = await self.runtime.broker.channel(prefetch=self.prefetch)
        self._loops = [
            asyncio.create_task(self._dispatch_loop(), name="iw-dispatch"),
            asyncio.create_task(self._commit_loop(), name="iw-commit"),
            asyncio.create_task(self._outbox_loop(), name="iw-outbox"),
            asyncio.create_task(self._relay_loop(), name="iw-outbox-relay"),
            asyncio.create_task(self._prune_loop(), name="iw-inbox-prune"),
        ]
        await self._subscribe()
        if isinstance(self._channel, AbstractRobustChannel):  # after a reconnect, consume again
            self._channel.reopen_callbacks.add(self._resubscribe)
        self.log.info("worker consuming", types=list(self.types), concurrency=self.concurrency, prefetch=self.prefetch)

    async def stop(self) -> None:
        """Stop consuming, let in-flight work finish (bounded), leave the rest for redelivery."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        for raw, tag in self._consumers:
            with contextlib.suppress(Exception):
                await raw.basic_cancel(tag)
        abandoned = len(self._pending)
        self._pending.clear()  # never started: unacknowledged, the broker redelivers them
        self._unfinished -= abandoned
        if self._unfinished <= 0:
            self._idle.set()
        deadline = asyncio.get_running_loop().time() + self.settings.shutdown_grace
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=self.settings.shutdown_grace)
        except TimeoutError:
            self.log.warning("shutdown grace elapsed; unfinished messages will be redelivered", left=self._unfinished)
        remaining = deadline - asyncio.get_running_loop().time()
        with contextlib.suppress(TimeoutError):  # committed events still being published (else the relay will)
            await asyncio.wait_for(self._committed_outbox.join(), timeout=max(0.0, remaining))
        for task in [*self._tasks, *self._loops]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._loops, return_exceptions=True)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()
        self.log.info("worker stopped", abandoned=abandoned)
        self._stopped.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # --- receiving -------------------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        assert self._channel is not None
        raw = await self._channel.get_underlay_channel()
        consumers = []
        for type_ in self.types:
            ok = await raw.basic_consume(self.runtime.topology.queue(type_), self._receiver(type_))
            assert ok.consumer_tag is not None
            consumers.append((raw, ok.consumer_tag))
        self._consumers = consumers

    async def _resubscribe(self, _channel: Any) -> None:
        if self._stopping:
            return
        try:
            await self._subscribe()
            self.log.info("consuming again after a reconnect", types=list(self.types))
        except Exception as exc:  # the robust connection retries; a failed restore closes it again
            self.log.warning("could not consume again after a reconnect", error=redact(str(exc)))

    def _receiver(self, type_: str) -> Any:
        async def receive(delivered: DeliveredMessage) -> None:
            if self._stopping:
                return  # left unacknowledged: redelivered after we close
            message = Received.of(delivered)
            if message.delivery_tag is not None:
                self._acks.delivered(message.channel, message.delivery_tag)
            self._pending.append(Delivery(message, type_))
            self._unfinished += 1
            self._idle.clear()
            self._count(IN_FLIGHT, type_).inc()
            self._wake.set()

        return receive

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Linger briefly while few are waiting: bigger groups share the inbox check and the
            # integration lookup (one round trip each per group) at a cost of at most 2 ms.
            for _ in range(4):
                if len(self._pending) >= _GROUP_TARGET or self._stopping:
                    break
                await asyncio.sleep(0.0005)
            while self._pending and not self._stopping:
                group = [self._pending.popleft() for _ in range(min(len(self._pending), self.settings.commit_batch))]
                try:
                    await self._dispatch(group)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug here must not stop the worker; the messages are redelivered
                    self.log.exception("dispatch failed; messages will be redelivered")
                    for delivery in group:
                        if not delivery.spawned:  # those handed over finish on their own
                            await self._finish(delivery, None, requeue=True)

    async def _dispatch(self, group: list[Delivery]) -> None:
        ready: list[Delivery] = []
        for delivery in group:
            try:
                delivery.envelope = Envelope.model_validate_json(delivery.message.body)
            except ValidationError as exc:
                self._spawn(delivery, self._park_poison(delivery, f"not a valid envelope: {_validation_summary(exc)}"))
                continue
            if delivery.envelope.type != delivery.queue_type:
                self._spawn(
                    delivery, self._park_poison(delivery, f"type {delivery.envelope.type!r} on the wrong queue")
                )
                continue
            waiting = self._inflight.get(delivery.envelope.id)
            if waiting is not None:  # the same id is being handled right now
                self._spawn(delivery, self._after(waiting, delivery))
                continue
            self._inflight[delivery.envelope.id] = asyncio.get_running_loop().create_future()
            delivery.owns_inflight = True
            ready.append(delivery)
        if not ready:
            return
        envelopes = [d.envelope for d in ready if d.envelope is not None]
        try:
            async with self.runtime.pool.acquire() as conn:
                done = await store.processed(conn, [e.id for e in envelopes])
                rows = await store.integrations_for(
                    conn,
                    [e.integration_id for e in envelopes if e.integration_id],
                    [(e.type, e.external_team_id) for e in envelopes if not e.integration_id and e.external_team_id],
                    [
                        (e.type, e.team_id)
                        for e in envelopes
                        if not e.integration_id and not e.external_team_id and e.team_id
                    ],
                )
        except DB_ERRORS as exc:
            failure = classify(exc)
            for delivery in ready:
                self._spawn(delivery, self._fail(delivery, failure))
            return
        by_id = {r.id: r for r in rows}
        by_external = {(r.type, r.external_team_id): r for r in rows if r.external_team_id}
        by_team: dict[tuple[str, str], list[IntegrationRow]] = {}
        for each in rows:
            by_team.setdefault((each.type, each.team_id), []).append(each)
        for delivery in ready:
            envelope = delivery.envelope
            assert envelope is not None
            if envelope.id in done:
                self._spawn(delivery, self._duplicate(delivery))
                continue
            row: IntegrationRow | None
            if envelope.integration_id:
                row = by_id.get(envelope.integration_id)
            elif envelope.external_team_id:
                row = by_external.get((envelope.type, envelope.external_team_id))
            elif envelope.team_id:
                candidates = by_team.get((envelope.type, envelope.team_id), [])
                row = candidates[0] if len(candidates) == 1 else None
                if len(candidates) > 1:
                    row = None
                    self._spawn(
                        delivery,
                        self._fail(
                            delivery,
                            Failure(
                                "permanent",
                                f"team {envelope.team_id} has {len(candidates)} {envelope.type} integrations; "
                                "say which with integration_id",
                            ),
                        ),
                    )
                    continue
            else:
                row = None
            self._spawn(delivery, self._run(delivery, row))

    # --- running ---------------------------------------------------------------------------------------

    async def _run(self, delivery: Delivery, row: IntegrationRow | None) -> None:
        envelope = delivery.envelope
        assert envelope is not None
        handler = self.runtime.registry.handler(envelope.type, envelope.kind, envelope.name)
        if handler is None:
            if envelope.kind == "command":
                await self._fail(delivery, Failure("permanent", f"{envelope.type} has no command {envelope.name!r}"))
            else:
                await self._finish(delivery, "ignored")
            return
        if row is not None:
            try:
                delivery.record = self.runtime.record(row)
            except PermanentError as exc:
                await self._fail(delivery, classify(exc))
                return
            if envelope.team_id and delivery.record.team_id != envelope.team_id:
                await self._fail(
                    delivery,
                    Failure("permanent", f"integration {row.id} does not belong to team {envelope.team_id}"),
                )
                return
        if delivery.record is None and handler.requires_integration:
            await self._fail(delivery, Failure("permanent", f"unknown integration for {_describe(envelope)}"))
            return
        if delivery.record is not None and not delivery.record.is_active and not handler.when_inactive:
            reason = f"integration is {delivery.record.row.status}"
            delivery.staged.logs.append(_log_entry(delivery, "info", "skipped_inactive", reason))
            action_results.stage_refusal(
                self.runtime.registry,
                staged=delivery.staged,
                envelope=envelope,
                message=delivery.message,
                team_id=delivery.record.team_id,
                integration_id=delivery.record.id,
                reason=reason,
            )
            await self._done.put(_Done(delivery, "skipped_inactive"))
            return
        await self._execute(delivery, handler)

    async def _execute(self, delivery: Delivery, handler: Handler) -> None:
        envelope = delivery.envelope
        assert envelope is not None
        log = self.log.bind(event_id=envelope.id, type=envelope.type, name=envelope.name, team_id=_team(delivery))
        ctx = self.runtime.context(
            envelope,
            delivery.record,
            log=log,
            staged=delivery.staged,
            reply_to=delivery.message.reply_to,
            correlation_id=delivery.message.correlation_id,
            redelivered=delivery.message.redelivered,
        )
        failure: Failure | None = None
        async with self._slots:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.settings.handler_timeout):
                    await handler.run(ctx)
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                failure = Failure("transient", f"handler timed out after {self.settings.handler_timeout:g}s")
            except Exception as exc:
                failure = classify(exc)
            delivery.handler_seconds = time.perf_counter() - started
        self._count(HANDLER_SECONDS, envelope.type).observe(delivery.handler_seconds)
        if failure is None:
            await self._done.put(_Done(delivery, "success"))
        else:
            delivery.staged = Staged()  # nothing of a failed run is written
            await self._fail(delivery, failure)

    # --- failing ---------------------------------------------------------------------------------------

    def retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """The delay level for failure number `attempt` (1-based), honouring a provider's Retry-After."""
        delays = self.settings.retry_delays
        index = min(attempt - 1, len(delays) - 1)
        if retry_after is not None:
            while index < len(delays) - 1 and delays[index] < retry_after:
                index += 1
        return delays[index]

    async def _fail(self, delivery: Delivery, failure: Failure) -> None:
        envelope = delivery.envelope
        assert envelope is not None
        attempt = envelope.attempt + 1
        if failure.kind == "transient" and attempt < self.settings.max_attempts:
            delay = self.retry_delay(attempt, failure.retry_after)
            expiration = int(delay * 1000 * (1 + random.random() * self.settings.retry_jitter))
            try:
                await self.runtime.broker.publish(
                    self.runtime.topology.retry,
                    envelope.routing_key,
                    dumps_envelope(envelope.next_attempt()),
                    message_id=envelope.id,
                    headers={
                        "retry-delay": self.runtime.topology.delay_label(delay),
                        "x-last-error": failure.reason[:_MAX_ERROR],
                    },
                    expiration_ms=expiration,
                    reply_to=delivery.message.reply_to,  # a waiting caller gets the answer of a later attempt
                    correlation_id=delivery.message.correlation_id,
                )
            except BrokerUnavailable as exc:
                self.log.warning("could not schedule a retry; message left for redelivery", error=str(exc))
                await self._finish(delivery, None, requeue=True)
                return
            RETRIED.labels(envelope.type).inc()
            await self._finish(delivery, "retried", reason=failure.reason, attempt=attempt, retry_in=expiration / 1000)
            return
        await self._park(delivery, failure, attempt)

    async def _park(self, delivery: Delivery, failure: Failure, attempts: int) -> None:
        envelope = delivery.envelope
        assert envelope is not None
        headers = {
            "x-error": failure.reason[:_MAX_ERROR],
            "x-error-kind": failure.kind,
            "x-attempts": attempts,
            "x-parked-at": datetime.now(UTC).isoformat(),
            "x-routing-key": envelope.routing_key,
            "x-type": envelope.type,
        }
        try:
            await self.runtime.broker.publish(
                self.runtime.topology.parked,
                envelope.routing_key,
                dumps_envelope(envelope),
                message_id=envelope.id,
                headers=headers,
            )
        except BrokerUnavailable as exc:
            self.log.warning("could not park; message left for redelivery", error=str(exc))
            await self._finish(delivery, None, requeue=True)
            return
        PARKED.labels(envelope.type).inc()
        await action_results.answer_parked(self.runtime, delivery.message, envelope, failure.reason)
        delivery.staged = Staged()
        log = None
        if delivery.record is not None:
            log = _log_entry(
                delivery,
                "error",
                "message_parked",
                failure.reason[:_MAX_ERROR],
                {"routing_key": envelope.routing_key, "attempts": attempts, "error_kind": failure.kind},
            )
        await self._done.put(_Done(delivery, "parked", log, failure.reason))

    async def _park_poison(self, delivery: Delivery, reason: str) -> None:
        message = delivery.message
        headers = {
            "x-error": reason[:_MAX_ERROR],
            "x-error-kind": "permanent",
            "x-attempts": 1,
            "x-parked-at": datetime.now(UTC).isoformat(),
            "x-routing-key": message.routing_key,
            "x-type": delivery.queue_type,
        }
        try:
            await self.runtime.broker.publish(
                self.runtime.topology.parked,
                message.routing_key,
                message.body,
                message_id=message.message_id,
                headers=headers,
            )
        except BrokerUnavailable:
            await self._finish(delivery, None, requeue=True)
            return
        PARKED.labels(delivery.queue_type).inc()
        await action_results.answer_parked(self.runtime, delivery.message, None, reason)
        await self._finish(delivery, "parked", reason=reason)

    # --- finishing ---------------------------------------------------------------------------------------

    async def _duplicate(self, delivery: Delivery) -> None:
        assert delivery.envelope is not None
        self._count(DUPLICATES, delivery.envelope.type).inc()
        await action_results.answer_duplicate(self.runtime, delivery.message, delivery.envelope)
        await self._finish(delivery, "duplicate")

    async def _after(self, waiting: asyncio.Future[None], delivery: Delivery) -> None:
        """A second copy of an id in flight: once the first is settled, this one is a duplicate."""
        await asyncio.shield(waiting)
        await self._duplicate(delivery)

    async def _finish(
        self, delivery: Delivery, outcome: Outcome | None, *, requeue: bool = False, flush: bool = True, **fields: Any
    ) -> None:
        """Acknowledge (or, for requeue, reject back to the queue), count, and log one line; once."""
        if delivery.settled:
            return
        delivery.settled = True
        envelope = delivery.envelope
        try:
            await self._settle(delivery.message, requeue=requeue, flush=flush)
        except Exception as exc:  # a closed channel: the broker redelivers, the inbox dedups
            self.log.warning("acknowledgement not delivered; the broker will redeliver", error=type(exc).__name__)
        self._count(IN_FLIGHT, delivery.queue_type).dec()
        if outcome is not None:
            self._count(PROCESSED, delivery.queue_type, outcome).inc()
            self._log_outcome(delivery, outcome, **fields)
        if envelope is not None and delivery.owns_inflight:
            delivery.owns_inflight = False
            future = self._inflight.pop(envelope.id, None)
            if future is not None and not future.done():
                future.set_result(None)
        self._unfinished -= 1
        if self._unfinished <= 0:
            self._unfinished = 0
            self._idle.set()

    def _log_outcome(self, delivery: Delivery, outcome: Outcome, **fields: Any) -> None:
        envelope = delivery.envelope
        duration_ms = round((time.perf_counter() - delivery.received) * 1000, 2)
        values = {
            "event_id": envelope.id if envelope else delivery.message.message_id,
            "type": delivery.queue_type,
            "name": envelope.name if envelope else None,
            "team_id": _team(delivery),
            "integration_id": delivery.record.id
            if delivery.record
            else (envelope.integration_id if envelope else None),
            "outcome": outcome,
            "duration_ms": duration_ms,
            **fields,
        }
        if outcome == "parked":
            self.log.error("message", **values)
        elif outcome == "retried":
            self.log.warning("message", **values)
        else:
            self.log.info("message", **values)

    # --- committing ------------------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            first = await self._done.get()
            batch = [first]
            while len(batch) < self.settings.commit_batch and not self._done.empty():
                batch.append(self._done.get_nowait())
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("commit failed unexpectedly; messages will be redelivered")
                for item in batch:
                    await self._finish(item.delivery, None, requeue=True)

    async def _commit(self, batch: list[_Done]) -> None:
        COMMIT_BATCH.observe(len(batch))
        refused: dict[int, Failure] = {}
        written: set[str] = set()
        try:
            async with self.runtime.pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        raced = await self._apply(conn, batch, written)
                except asyncpg.PostgresError as exc:
                    if classify(exc).kind == "transient":
                        raise
                    written.clear()
                    raced, refused = await self._apply_one_by_one(conn, batch, written)
        except DB_ERRORS as exc:
            failure = classify(exc)  # the database is unavailable: nothing of this batch committed
            for item in batch:
                if item.outcome == "parked":  # already safe on the parking queue; only its log row is lost
                    await self._finish(item.delivery, "parked", reason=item.reason, log_row="not written")
                else:
                    item.delivery.staged = Staged()
                    self._spawn(item.delivery, self._fail(item.delivery, failure))
            return
        for item in batch:  # committed events go out from here on; the acks need not wait for them
            if item.outcome != "parked" and id(item) not in raced and id(item) not in refused:
                for event in item.delivery.staged.outbox:
                    if event.id in written:
                        self._committed_outbox.put_nowait(event)
        for item in batch:
            if id(item) in refused and item.outcome == "parked":
                await self._finish(item.delivery, "parked", reason=item.reason, log_row="refused")
            elif id(item) in refused:
                item.delivery.staged = Staged()
                attempts = (item.delivery.envelope.attempt if item.delivery.envelope else 0) + 1
                self._spawn(item.delivery, self._park(item.delivery, refused[id(item)], attempts))
            elif id(item) in raced:  # another worker committed this id first
                await self._duplicate(item.delivery)
            elif item.outcome == "parked":
                await self._finish(item.delivery, "parked", reason=item.reason)
            else:
                await self._finish(
                    item.delivery,
                    item.outcome,
                    flush=False,
                    handler_ms=round(item.delivery.handler_seconds * 1000, 2),
                    events=len(item.delivery.staged.outbox),
                )
        try:
            await self._acks.flush()
        except Exception as exc:  # a channel closing: the broker redelivers, the inbox dedups
            self.log.warning("acknowledgements not delivered; the broker will redeliver", error=type(exc).__name__)

    async def _apply(self, conn: Conn, batch: list[_Done], written: set[str]) -> set[int]:
        """Inbox ids, staged writes, outbox and log rows of the batch; returns the items that raced
        (their id was committed by another worker meanwhile), whose writes are left out."""
        raced: set[int] = set()
        successes = [item for item in batch if item.outcome != "parked"]
        envelopes = [item.delivery.envelope for item in successes if item.delivery.envelope]
        fresh = await store.mark_processed(conn, [e.id for e in envelopes], [e.type for e in envelopes])
        writes: list[tuple[str, tuple[Any, ...]]] = []
        outbox = []
        logs = [item.log for item in batch if item.log is not None]
        for item in successes:
            envelope = item.delivery.envelope
            assert envelope is not None
            if envelope.id not in fresh:
                raced.add(id(item))
                continue
            writes.extend(item.delivery.staged.writes)
            outbox.extend(item.delivery.staged.outbox)
            logs.extend(item.delivery.staged.logs)
        await store.run_writes(conn, writes)
        written |= await store.insert_outbox(conn, outbox)
        await store.insert_logs(conn, logs)
        return raced

    async def _apply_one_by_one(
        self, conn: Conn, batch: list[_Done], written: set[str]
    ) -> tuple[set[int], dict[int, Failure]]:
        """The batch failed on a row: apply each item in its own savepoint; the database's
        refusals are permanent failures of those items alone."""
        raced: set[int] = set()
        refused: dict[int, Failure] = {}
        async with conn.transaction():
            for item in batch:
                try:
                    mine: set[str] = set()
                    async with conn.transaction():
                        raced |= await self._apply(conn, [item], mine)
                    written |= mine
                except asyncpg.PostgresError as exc:
                    failure = classify(exc)
                    if failure.kind == "transient":
                        raise
                    refused[id(item)] = failure
        return raced, refused

    # --- background ------------------------------------------------------------------------------------

    async def _outbox_loop(self) -> None:
        """Publish committed result events, pipelined, and delete them from the outbox. What fails
        here stays in the outbox table, where the relay finds it."""
        while True:
            items = [await self._committed_outbox.get()]
            while not self._committed_outbox.empty() and len(items) < self.settings.commit_batch:
                items.append(self._committed_outbox.get_nowait())
            try:
                await self.runtime.publish_outbox(items)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the relay retries them
                self.log.warning("result events left for the relay", error=redact(str(exc)), count=len(items))
            finally:
                for _ in items:
                    self._committed_outbox.task_done()

    async def _relay_loop(self) -> None:
        """Publish result events whose fast path failed (broker hiccup, crash after commit)."""
        interval = self.settings.outbox_relay_interval
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.runtime.pool.acquire() as conn, conn.transaction():
                    due = await store.due_outbox(conn, older_than_seconds=interval * 6, limit=500)
                    if not due:
                        continue
                    published = []
                    for record in due:
                        try:
                            await self.runtime.broker.publish(
                                record["exchange"],
                                record["routing_key"],
                                bytes(record["body"]),
                                message_id=record["id"],
                                correlation_id=record["correlation_id"],
                            )
                            published.append(record["id"])
                        except Unroutable:
                            if record["exchange"] == "":
                                published.append(record["id"])  # the caller is gone; nobody to answer
                                continue
                            break
                        except BrokerUnavailable:
                            break
                    await store.delete_outbox(conn, published)
                    self.log.info("outbox relayed", count=len(published))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("outbox relay failed", error=redact(str(exc)))

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(3600)
            try:
                async with self.runtime.pool.acquire() as conn, conn.transaction():
                    # one worker prunes at a time; the lock goes with the transaction
                    if await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext('iw-inbox-prune'))"):
                        removed = await store.prune_inbox(conn, self.settings.inbox_retention_days)
                        self.log.info("inbox pruned", removed=removed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("inbox prune failed", error=redact(str(exc)))

    async def _settle(self, message: Received, *, requeue: bool, flush: bool) -> None:
        """Acknowledge (in bulk, see worker/acks.py) or send back to the queue. An ack that never
        reaches the broker only means a redelivery, which the inbox turns into a duplicate."""
        tag = message.delivery_tag
        if tag is None:
            return
        if requeue:
            await self._acks.reject(message.channel, tag, requeue=True)
        else:
            self._acks.ack(message.channel, tag)
        if flush:
            await self._acks.flush()

    def _spawn(self, delivery: Delivery, coro: Any) -> None:
        """Run `coro` for `delivery`; if the worker's own code fails, the message goes back to the
        queue (and a crash loop ends parked by the queue's delivery limit), never stranded."""

        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("internal error; message returned to the queue", event_id=_event_id(delivery))
                await self._finish(delivery, None, requeue=True)

        delivery.spawned = True
        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _describe(envelope: Envelope) -> str:
    if envelope.integration_id:
        return f"integration_id={envelope.integration_id}"
    if envelope.external_team_id:
        return f"{envelope.type} external_team_id={envelope.external_team_id}"
    if envelope.team_id:
        return f"{envelope.type} team_id={envelope.team_id}"
    return f"{envelope.routing_key} (no integration_id, external_team_id or team_id)"


def _event_id(delivery: Delivery) -> str | None:
    return delivery.envelope.id if delivery.envelope else delivery.message.message_id


def _team(delivery: Delivery) -> str | None:
    if delivery.record is not None:
        return delivery.record.team_id
    return delivery.envelope.team_id if delivery.envelope else None


def _log_entry(
    delivery: Delivery, level: Any, key: str, message: str, details: dict[str, Any] | None = None
) -> LogEntry:
    assert delivery.record is not None and delivery.envelope is not None
    return LogEntry(
        delivery.record.id,
        delivery.record.team_id,
        level,
        key,
        message,
        delivery.envelope.id,
        details,
        None,
        round(delivery.handler_seconds * 1000),
    )
