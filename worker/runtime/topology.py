"""The broker's topology, declared idempotently by every process at start.

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

import hashlib
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel, ExchangeType


def message_id_for(envelope_id: str) -> str:
    """The AMQP `message-id` of a message whose envelope id is `envelope_id`. The property is a
    short string (at most 255 bytes) while an envelope id may be 512 characters: a longer id is
    carried as its digest, and the envelope in the body keeps it whole."""
    if len(envelope_id) <= 63 or len(envelope_id.encode()) <= 255:
        return envelope_id
    return "sha256:" + hashlib.sha256(envelope_id.encode()).hexdigest()


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
