"""Consuming: the deliveries of a worker's queues, handed over as batches.

One connection of its own per worker process, one channel, one consumer per queue type; the
channel's prefetch bounds what is in flight. A batch is cut when `batch_size` deliveries are
waiting or `batch_linger` seconds after the first of them came. When the connection is lost, the
deliveries of the old channel are left to the broker (it redelivers them; acknowledging their
tags on a new channel would be an error) and the intake connects and consumes again, backing
off under tenacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.runtime import amqp
from worker.runtime.acks import Acks
from worker.runtime.broker import BROKER_ERRORS, Broker
from worker.runtime.dispatch import Message


class Intake:
    def __init__(
        self,
        broker: Broker,
        queues: Mapping[str, str],
        *,
        prefetch: int,
        batch_size: int,
        linger: float,
        acks: Acks,
        on_batch: Callable[[list[Message]], None],
    ) -> None:
        self._broker = broker
        self._queues = dict(queues)  # queue name -> integration type
        self._prefetch = prefetch
        self._batch_size = batch_size
        self._linger = linger
        self._acks = acks
        self._on_batch = on_batch
        self._tags: list[str] = []
        self._connection: amqp.Connection | None = None
        self._channel: amqp.Channel | None = None
        self._buffer: list[Message] = []
        self._timer: asyncio.TimerHandle | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._receiving = False
        self.log = get_logger(component="intake")

    async def start(self) -> None:
        self._receiving = True
        await self._subscribe()

    async def _subscribe(self) -> None:
        connection = await self._broker.consumer_connection("consume")
        try:
            channel = await connection.channel()
            await channel.qos(self._prefetch)
            channel.on_cancel = self._cancelled
            self._connection, self._channel = connection, channel
            tags = []
            for queue, type_ in self._queues.items():
                tags.append(await channel.consume(queue, functools.partial(self._received, type_)))
        except BaseException:
            connection.abort()
            raise
        self._tags = tags
        connection.closed.add_done_callback(self._lost)

    def _received(self, type_: str, delivery: amqp.Delivery) -> None:
        if not self._receiving:  # stopping: back to the queue at once
            with contextlib.suppress(amqp.AmqpError):
                delivery.channel.reject(delivery.tag, requeue=True)
            return
        self._acks.delivered(delivery.channel, delivery.tag)
        buffer = self._buffer
        buffer.append(Message(delivery, type_, time.perf_counter()))
        if len(buffer) >= self._batch_size:
            self._cut()
        elif len(buffer) == 1:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._cut)

    def _cut(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._buffer = self._buffer, []
        if batch:
            self._on_batch(batch)

    # --- losing the connection -------------------------------------------------------------------------

    def _cancelled(self, _consumer_tag: str) -> None:
        """The broker cancelled a consumer (its queue was deleted) or the channel closed."""
        if self._connection is not None and not self._connection.is_closed:
            self._connection.abort(amqp.ConnectionLost("a consumer was cancelled by the broker"))

    def _lost(self, closed: asyncio.Future[None]) -> None:
        self._channel = None
        if not self._receiving or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        self.log.warning("consumer connection lost; consuming again", error=redact(str(closed.exception())))
        self._reconnecting = asyncio.get_running_loop().create_task(self._resubscribe(), name="iw-intake-reconnect")

    async def _resubscribe(self) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(BROKER_ERRORS),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
            before_sleep=self._log_retry,
        ):
            with attempt:
                if not self._receiving:
                    return
                await self._subscribe()
        self.log.info("consuming again after a reconnect", types=sorted(set(self._queues.values())))

    def _log_retry(self, state: Any) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.log.warning(
            "could not consume again yet", error=redact(str(error)), retry_in=round(state.upcoming_sleep, 2)
        )

    # --- stopping --------------------------------------------------------------------------------------

    async def stop_receiving(self) -> int:
        """Stop taking deliveries; those waiting for a batch go back to the queue (a later
        multiple-ack must not cover them). Returns how many went back."""
        self._receiving = False
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self._timer is not None:
            self._timer.cancel()
        abandoned, self._buffer = self._buffer, []
        for message in abandoned:
            with contextlib.suppress(amqp.AmqpError):
                self._acks.reject(message.delivery.channel, message.delivery.tag, requeue=True)
        channel = self._channel
        if channel is not None:
            for tag in self._tags:
                with contextlib.suppress(amqp.AmqpError, TimeoutError):
                    await asyncio.wait_for(channel.cancel(tag), 2)
        return len(abandoned)

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            await connection.close()
