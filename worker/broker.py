"""RabbitMQ: the topology, declared idempotently at start, and a publisher with confirms.

<p>.incoming          topic     every webhook, command and platform event, key <type>.<kind>.<name>
  -> <p>.<type>       quorum    one queue per integration type, bound <type>.#; after
                                `delivery_limit` deliveries (a crash loop) dead-letters to <p>.parked
  (unroutable)      -> <p>.parked (alternate exchange)
<p>.retry             headers   a failed message waits here, on the queue of its delay ...
  -> <p>.retry.<ms>ms classic   ... whose TTL dead-letters it back to <p>.incoming, key unchanged
<p>.parked            fanout    messages that will not succeed without help
  -> <p>.parked       classic   inspected and replayed with `integration-worker dead`
<p>.results           topic     result events for other services, key = event type
  (unroutable)      -> <p>.results.unrouted (kept until someone binds a queue)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection, ExchangeType
from pamqp.commands import Basic

from worker.logging import get_logger
from worker.redact import redact

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    RuntimeError,
)


class BrokerUnavailable(Exception):
    """The broker did not confirm a publish (down, unreachable, refused or timed out)."""


class Unroutable(BrokerUnavailable):
    """The broker returned the message: no queue is bound for its routing key."""


@dataclass(frozen=True)
class Topology:
    prefix: str
    types: tuple[str, ...]
    retry_delays: tuple[float, ...]
    delivery_limit: int

    @property
    def incoming(self) -> str:
        return f"{self.prefix}.incoming"

    @property
    def retry(self) -> str:
        return f"{self.prefix}.retry"

    @property
    def parked(self) -> str:
        return f"{self.prefix}.parked"

    @property
    def results(self) -> str:
        return f"{self.prefix}.results"

    @property
    def results_unrouted(self) -> str:
        return f"{self.prefix}.results.unrouted"

    def queue(self, type_: str) -> str:
        return f"{self.prefix}.{type_}"

    @staticmethod
    def delay_label(delay: float) -> str:
        return f"{round(delay * 1000)}ms"

    def retry_queue(self, delay: float) -> str:
        return f"{self.prefix}.retry.{self.delay_label(delay)}"

    def queue_names(self) -> list[str]:
        names = [self.queue(t) for t in self.types]
        names += [self.retry_queue(d) for d in self.retry_delays]
        return [*names, self.parked, self.results_unrouted]

    def exchange_names(self) -> list[str]:
        return [self.incoming, self.retry, self.parked, self.results, self.results_unrouted]


async def declare(channel: AbstractChannel, topology: Topology) -> None:
    """Declare every exchange, queue and binding. Idempotent; run by every process at start."""
    t = topology
    parked_x = await channel.declare_exchange(t.parked, ExchangeType.FANOUT, durable=True)
    parked_q = await channel.declare_queue(t.parked, durable=True, arguments={"x-queue-type": "classic"})
    await parked_q.bind(parked_x, "")

    incoming = await channel.declare_exchange(
        t.incoming, ExchangeType.TOPIC, durable=True, arguments={"alternate-exchange": t.parked}
    )
    for type_ in t.types:
        queue = await channel.declare_queue(
            t.queue(type_),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": t.delivery_limit,
                "x-dead-letter-exchange": t.parked,
            },
        )
        await queue.bind(incoming, f"{type_}.#")

    retry_x = await channel.declare_exchange(t.retry, ExchangeType.HEADERS, durable=True)
    for delay in t.retry_delays:
        retry_q = await channel.declare_queue(
            t.retry_queue(delay),
            durable=True,
            arguments={"x-queue-type": "classic", "x-dead-letter-exchange": t.incoming},
        )
        # Headers whose names start with "x-" are ignored by a headers exchange's matching.
        await retry_q.bind(retry_x, "", arguments={"x-match": "all", "retry-delay": t.delay_label(delay)})

    unrouted_x = await channel.declare_exchange(t.results_unrouted, ExchangeType.FANOUT, durable=True)
    unrouted_q = await channel.declare_queue(t.results_unrouted, durable=True, arguments={"x-queue-type": "classic"})
    await unrouted_q.bind(unrouted_x, "")
    await channel.declare_exchange(
        t.results, ExchangeType.TOPIC, durable=True, arguments={"alternate-exchange": t.results_unrouted}
    )


async def delete(channel: AbstractChannel, topology: Topology) -> None:
    """Remove everything `declare` made (tests, or tearing an environment down)."""
    for name in topology.queue_names():
        await channel.queue_delete(name, if_unused=False, if_empty=False)
    for name in topology.exchange_names():
        await channel.exchange_delete(name, if_unused=False)


class Broker:
    """One robust connection; a confirming channel for publishing, more channels for consumers."""

    def __init__(self, url: str, topology: Topology, *, publish_timeout: float = 10.0) -> None:
        self._url = url
        self.topology = topology
        self._publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._log = get_logger(component="broker")

    @property
    def connected(self) -> bool:
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def connect(self, *, declare_topology: bool = True) -> None:
        self._connection = await aio_pika.connect_robust(
            self._url, client_properties={"connection_name": f"integration-worker/{self.topology.prefix}"}
        )
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        if declare_topology:
            await declare(self._channel, self.topology)

    async def connect_with_retry(self, *, declare_topology: bool = True, max_delay: float = 10.0) -> None:
        """Connect, waiting for the broker if it is not up yet."""
        delay = 0.5
        while True:
            try:
                await self.connect(declare_topology=declare_topology)
                return
            except BROKER_ERRORS as exc:
                self._log.warning("broker not reachable, retrying", error=redact(str(exc)), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(max_delay, delay * 2)

    async def channel(self, *, prefetch: int | None = None, confirms: bool = True) -> AbstractChannel:
        if self._connection is None:
            raise BrokerUnavailable("not connected")
        channel = await self._connection.channel(publisher_confirms=confirms, on_return_raises=confirms)
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        expiration_ms: int | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        mandatory: bool = True,
    ) -> None:
        """Publish (persistent, mandatory) and wait for the broker's confirm; raise `BrokerUnavailable`
        otherwise, `Unroutable` when no queue took it.

        This goes to aiormq's channel with `wait=False`: aio-pika waits, under the channel's lock,
        for each message's frames to be flushed, which serialises concurrent publishes; without
        that wait, publishes pipeline and only their confirms are awaited.
        """
        if not self.connected or self._channel is None:
            raise BrokerUnavailable("not connected to the broker")
        properties = Basic.Properties(
            content_type="application/json",
            delivery_mode=2,
            message_id=message_id,
            headers=dict(headers) if headers else None,
            expiration=str(expiration_ms) if expiration_ms is not None else None,
            correlation_id=correlation_id,
            reply_to=reply_to,
        )
        try:
            channel = cast(aiormq.Channel, await self._channel.get_underlay_channel())
            confirmation = await channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                timeout=self._publish_timeout,
                wait=False,
            )
        except aiormq.exceptions.PublishError as exc:
            raise Unroutable(f"no queue for {exchange or '(default)'}/{routing_key}") from exc
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"publish failed: {type(exc).__name__}") from exc
        if not isinstance(confirmation, Basic.Ack):
            raise BrokerUnavailable(f"broker refused the message ({type(confirmation).__name__})")

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._channel = None
