"""Consuming: the shard queues a worker owns, each on a channel of its own.

One connection per worker process. Each owned shard queue gets a channel whose prefetch
(IW_PREFETCH) is the worker's read-ahead on it, and one consumer. The queue has a single active
consumer: while another worker still holds the shard, ours waits, and gets the shard's
deliveries, in their order, once that one has let go. Each delivery becomes a `Message` with its
ordering key (the `iw-key` header, else computed from the envelope) and goes to admission.

Handing a shard over (`release`): its new deliveries are held (not admitted, not acknowledged),
what has not started is withdrawn, and once what runs is settled and acknowledged the shard's
channel is closed: the broker takes everything unacknowledged back, in order, before it
activates the next consumer. (A `basic.cancel` would not do: the broker activates the next
consumer at once, while what is held here would come back after newer messages.)

Failures stay where they happen:
    a channel the broker closed, a consumer it cancelled (its queue deleted): that shard alone
        is subscribed again, its type's topology declared again first if the queue is gone
    the connection lost: every owned shard is subscribed again on a new connection, with
        backoff; what was in flight finishes, its acknowledgements are dropped (the broker
        redelivers; the inbox turns repeats of committed work into duplicates)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from schemas.envelope import KEY_HEADER, tenant_of_key
from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.runtime import amqp, dispatch, lanes, metrics
from worker.runtime.acks import Acks
from worker.runtime.admission import Admission
from worker.runtime.broker import BROKER_ERRORS, Broker
from worker.runtime.dispatch import Message
from worker.runtime.fences import Fences
from worker.runtime.lanes import FENCE_HEADER, LANE_HEADER
from worker.runtime.topology import Topology
from worker.sdk.registry import Registry

NOT_FOUND = 404


@dataclass(eq=False)
class Shard:
    queue: str
    type: str
    id: str  # `<type>/<index>`, whichever lane the queue is of
    channel: amqp.Channel | None = None
    holding: bool = False  # being handed over: deliveries are held, not admitted
    resubscribing: asyncio.Task[None] | None = None

    @property
    def consuming(self) -> bool:
        return self.channel is not None and not self.channel.is_closed and not self.holding


class Intake:
    def __init__(
        self,
        broker: Broker,
        topology: Topology,
        registry: Registry,
        admission: Admission,
        acks: Acks,
        *,
        fences: Fences,
        prefetch: int,
        types: Iterable[str],
    ) -> None:
        self._broker = broker
        self._topology = topology
        self._registry = registry
        self._admission = admission
        self._acks = acks
        self._fences = fences
        self._prefetch = prefetch
        self.types = tuple(types)
        self._shards: dict[str, Shard] = {}  # owned, by queue name
        self._releasing: dict[str, asyncio.Task[None]] = {}  # being handed over
        self._draining: set[str] = set()  # unsharded queues of before: consumed until gone, never handed over
        self._connection: amqp.Connection | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._receiving = False
        self.log = get_logger(component="intake")

    # --- owning shards -----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._receiving = True
        await self._connect()

    def owned(self) -> set[str]:
        return set(self._shards)

    async def own(self, queues: set[str]) -> None:
        """Consume exactly these queues (and those being drained): subscribe to the new ones and
        start handing the others over (in the background: a handover waits for what runs)."""
        for name, shard in list(self._shards.items()):
            if name not in queues and name not in self._draining:
                del self._shards[name]
                task = asyncio.get_running_loop().create_task(self._release(shard), name=f"iw-release-{name}")
                self._releasing[name] = task
                task.add_done_callback(functools.partial(self._released, name))
        for name in sorted(queues):
            if name in self._shards or name in self._releasing:
                continue  # still being handed over: taken again at the next beat
            await self._add(name)

    async def drain(self, queues: Iterable[str]) -> None:
        """Consume these queues too, until the process stops (the unsharded ones of before)."""
        for name in queues:
            self._draining.add(name)
            if name not in self._shards:
                await self._add(name)

    async def _add(self, name: str) -> None:
        found = self._topology.shard_of(name)
        if found is not None:
            type_, index, _ = found
            shard = Shard(name, type_, f"{type_}/{index}")
            await self._fences.load(shard.id)  # the switches behind it, before its laned messages run
        else:
            legacy_type = self._topology.queue_type(name)
            if legacy_type is None:
                raise ValueError(f"{name} is not a queue of this topology")
            shard = Shard(name, legacy_type, name)
        self._shards[name] = shard
        if self._connection is not None and not self._connection.is_closed:
            try:
                await self._subscribe(shard)
            except BROKER_ERRORS as exc:
                self._lost_shard(shard, exc)

    def _released(self, name: str, task: asyncio.Task[None]) -> None:
        self._releasing.pop(name, None)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("handing a shard over failed", queue=name, error=repr(task.exception()))

    async def _release(self, shard: Shard) -> None:
        """Hand a shard over: hold, withdraw, let what runs settle, close its channel."""
        shard.holding = True
        if shard.resubscribing is not None:
            shard.resubscribing.cancel()
        self._admission.withdraw([shard.queue])
        self._fences.withdraw([shard.queue])
        await self._admission.idle(shard.queue)
        self._acks.flush()
        channel, shard.channel = shard.channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(amqp.AmqpError, TimeoutError):
                await asyncio.wait_for(channel.close(), 5)
        if not any(other.id == shard.id for other in self._shards.values()):
            self._fences.unload(shard.id)  # its other lane is gone too: its next holder loads them
        metrics.child(metrics.SHARD_HANDOVERS, shard.type).inc()
        self.log.info("shard handed over", queue=shard.queue)

    async def _subscribe(self, shard: Shard) -> None:
        connection = self._connection
        if connection is None or connection.is_closed:
            raise amqp.ConnectionLost("not connected")
        channel = await connection.channel()
        try:
            await channel.qos(self._prefetch)
            channel.on_cancel = functools.partial(self._cancelled, shard, channel)
            channel.on_consumer_error = self._consumer_error
            await channel.consume(shard.queue, functools.partial(self._received, shard))
        except BaseException:
            with contextlib.suppress(amqp.AmqpError, TimeoutError):
                await asyncio.wait_for(channel.close(), 2)
            raise
        shard.channel = channel

    # --- deliveries --------------------------------------------------------------------------------------

    def _received(self, shard: Shard, delivery: amqp.Delivery) -> None:
        self._acks.delivered(delivery.channel, delivery.tag)
        if shard.holding or not self._receiving:
            return  # held: the broker takes it back when the channel closes
        headers = delivery.headers or {}
        key = headers.get(KEY_HEADER)
        fence = lanes.parse(headers.get(FENCE_HEADER)) if FENCE_HEADER in headers else None
        if fence is not None and isinstance(key, str):
            self._fences.fence(shard.id, key, *fence, delivery)
            return
        message = Message(delivery, shard.type, time.perf_counter(), queue=shard.queue, shard=shard.id)
        if not isinstance(key, str) or not key:
            key = self._key_of(message)
        message.key = key
        message.tenant = tenant_of_key(key)
        lane = lanes.parse(headers.get(LANE_HEADER)) if LANE_HEADER in headers else None
        if lane is not None and not self._fences.admit(message, *lane):
            return  # held until the fences of its team's earlier lanes are read
        self._admission.add(message)

    def released(self, message: Message) -> None:
        """A message the fences held may run now."""
        if self._receiving and message.queue in self._shards and not self._shards[message.queue].holding:
            self._admission.add(message)

    def _key_of(self, message: Message) -> str:
        """A message published without its key (another service, the unsharded queue of before):
        computed from the envelope as a publisher would; one that is unreadable runs on its own."""
        if not dispatch.decode(message):
            return f"-:poison|{message.delivery.tag}"
        assert message.envelope is not None
        return self._registry.key_of(message.envelope)

    def _consumer_error(self, delivery: amqp.Delivery, exc: Exception) -> None:
        self.log.error("delivery not taken (back to its queue)", queue=delivery.routing_key, error=repr(exc))

    # --- failures ----------------------------------------------------------------------------------------

    def _cancelled(self, shard: Shard, channel: amqp.Channel, _consumer_tag: str) -> None:
        """The broker cancelled our consumer (its queue was deleted) or closed the channel."""
        if shard.channel is not channel:
            return
        shard.channel = None
        reason = "the broker cancelled the consumer" if not channel.is_closed else "the channel closed"
        if not channel.is_closed:
            task = asyncio.get_running_loop().create_task(channel.close())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        if self._connection is None or self._connection.is_closed:
            return  # the connection's loss subscribes every shard again
        self._lost_shard(shard, amqp.ChannelClosed(reason))

    def _lost_shard(self, shard: Shard, error: BaseException) -> None:
        self._admission.withdraw([shard.queue])
        self._fences.withdraw([shard.queue])
        if not self._receiving or shard.holding or shard.queue not in self._shards:
            return
        if shard.resubscribing is not None and not shard.resubscribing.done():
            return
        self.log.warning("shard lost; consuming it again", queue=shard.queue, error=redact(str(error)))
        shard.resubscribing = asyncio.get_running_loop().create_task(
            self._resubscribe(shard), name=f"iw-resubscribe-{shard.queue}"
        )

    async def _resubscribe(self, shard: Shard) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, BROKER_ERRORS)),
            wait=wait_exponential_jitter(multiplier=0.05, max=5.0),
            before_sleep=self._log_retry,
        ):
            with attempt:
                if not self._receiving or shard.holding or self._shards.get(shard.queue) is not shard:
                    return
                if self._connection is None or self._connection.is_closed:
                    return  # the connection's loss subscribes every shard again
                try:
                    await self._subscribe(shard)
                except amqp.ChannelClosed as exc:
                    if exc.code == NOT_FOUND:  # the queue is gone: the topology is ours, declare it again
                        self.log.warning("queue missing; declaring it again", queue=shard.queue)
                        await self._broker.declare_type(shard.type)
                    raise
        self.log.info("consuming again", queue=shard.queue)

    async def _connect(self) -> None:
        connection = await self._broker.consumer_connection("consume")
        self._connection = connection
        connection.closed.add_done_callback(functools.partial(self._connection_lost, connection))
        for shard in list(self._shards.values()):
            if not shard.holding:
                try:
                    await self._subscribe(shard)
                except amqp.ChannelClosed as exc:
                    self._lost_shard(shard, exc)

    def _connection_lost(self, connection: amqp.Connection, closed: asyncio.Future[None]) -> None:
        if connection is not self._connection:
            return
        for shard in self._shards.values():
            shard.channel = None
        self._admission.withdraw(list(self._shards))
        self._fences.withdraw(list(self._shards))
        if not self._receiving or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        self.log.warning("consumer connection lost; consuming again", error=redact(str(closed.exception())))
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(), name="iw-intake-reconnect")

    async def _reconnect(self) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, BROKER_ERRORS)),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
            before_sleep=self._log_retry,
        ):
            with attempt:
                if not self._receiving:
                    return
                await self._connect()
        self.log.info("consuming again after a reconnect", queues=len(self._shards))

    def _log_retry(self, state: Any) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.log.warning(
            "could not consume again yet", error=redact(str(error)), retry_in=round(state.upcoming_sleep, 2)
        )

    # --- health and stopping -----------------------------------------------------------------------------

    def status(self) -> dict[str, dict[str, int]]:
        """Per type: shards owned, and how many of them are consumed now."""
        found: dict[str, dict[str, int]] = {t: {"owned": 0, "consuming": 0} for t in self.types}
        for shard in self._shards.values():
            found[shard.type]["owned"] += 1
            found[shard.type]["consuming"] += shard.consuming
        return found

    def stop_receiving(self) -> int:
        """Hold every delivery from now on (nothing new is admitted); what waited is withdrawn.
        Returns how many were withdrawn (the broker gets them back when the connection closes)."""
        self._receiving = False
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        for shard in self._shards.values():
            shard.holding = True
            if shard.resubscribing is not None:
                shard.resubscribing.cancel()
        self._fences.withdraw([*self._shards, *self._releasing])
        return len(self._admission.withdraw([*self._shards, *self._releasing]))

    async def close(self) -> None:
        """Close the connection: the broker takes back everything unacknowledged, shard by shard in
        order, and activates the next consumers."""
        for task in list(self._releasing.values()):
            task.cancel()
        self._acks.flush()
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
