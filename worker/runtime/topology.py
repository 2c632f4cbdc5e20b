"""The broker's topology, declared idempotently by every process at start.

<p>.incoming            topic     every webhook, command and platform event, key <type>.<kind>.<name>
  -> <p>.<type>.shards  x-consistent-hash, on the `iw-key` header: a type's messages spread by key
    -> <p>.<type>.<i>   quorum, single active consumer: shard i of the type (IW_SHARDS of them);
                        the events of one key are on one shard, in the order the broker took them,
                        and only one worker consumes a shard at a time; after `delivery_limit`
                        deliveries (a crash loop) a message dead-letters to <p>.parked
  (unroutable)        -> <p>.parked (alternate exchange)
<p>.<type>.bulk.shards  x-consistent-hash: the webhooks of a team over its rate (lanes.py)
  -> <p>.<type>.bulk.<i> the bulk lane of shard i, consumed with it

The service publishes its own messages straight to the type's shard exchange (a hop through the
topic exchange costs the broker ~40 us a message); other services publish to <p>.incoming.
<p>.retry               headers   a failed message waits here, on the queue of its delay ...
  -> <p>.retry.<ms>ms   classic   ... whose TTL dead-letters it back to <p>.incoming, key unchanged
<p>.parked              fanout    messages that will not succeed without help
  -> <p>.parked         classic   inspected and replayed with `integration-worker dead`
<p>.results             topic     result events for other services, key = event type
  (unroutable)        -> <p>.results.unrouted (kept until someone binds a queue)

Before sharding a type had one queue, <p>.<type>: declaring unbinds it (it gets nothing new) and
workers drain what it still holds (`legacy_queues`); it is deleted once empty.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import aio_pika.exceptions
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, ExchangeType

from schemas.envelope import KEY_HEADER
from worker.core.settings import ConfigurationError

PLUGIN_MISSING = (
    "RabbitMQ's consistent-hash exchange is not enabled: run "
    "`rabbitmq-plugins enable rabbitmq_consistent_hash_exchange` on every node (it ships with the server)"
)


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
    shards: Mapping[str, int] = field(default_factory=dict)  # per type; absent: 1
    laned: frozenset[str] = frozenset()  # types whose webhooks have a bulk lane

    def shard_count(self, type_: str) -> int:
        return self.shards.get(type_, 1)

    def shard_exchange(self, type_: str, *, bulk: bool = False) -> str:
        """A type's consistent-hash exchange (of its bulk lane). The service publishes its own
        messages straight to it; others publish to the incoming exchange, which routes there."""
        return f"{self.prefix}.{type_}.bulk.shards" if bulk else f"{self.prefix}.{type_}.shards"

    def shard_queue(self, type_: str, index: int, *, bulk: bool = False) -> str:
        return f"{self.prefix}.{type_}.bulk.{index}" if bulk else f"{self.prefix}.{type_}.{index}"

    def queues(self, type_: str, *, bulk: bool = False) -> list[str]:
        """The shard queues of a type (of its bulk lane), in shard order."""
        if bulk and type_ not in self.laned:
            return []
        return [self.shard_queue(type_, i, bulk=bulk) for i in range(self.shard_count(type_))]

    def shard_of(self, queue: str) -> tuple[str, int, bool] | None:
        """(type, index, bulk lane) of a shard queue."""
        for type_ in self.types:
            for bulk in (False, True):
                for index in range(self.shard_count(type_)):
                    if queue == self.shard_queue(type_, index, bulk=bulk):
                        return type_, index, bulk and type_ in self.laned
        return None

    def legacy_queue(self, type_: str) -> str:
        """The type's one queue from before sharding."""
        return f"{self.prefix}.{type_}"

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

    @staticmethod
    def delay_label(delay: float) -> str:
        return f"{round(delay * 1000)}ms"

    def retry_queue(self, delay: float) -> str:
        return f"{self.prefix}.retry.{self.delay_label(delay)}"

    def queue_names(self) -> list[str]:
        names = [queue for t in self.types for queue in (*self.queues(t), *self.queues(t, bulk=True))]
        names += [self.retry_queue(d) for d in self.retry_delays]
        return [*names, self.parked, self.results_unrouted]

    def exchange_names(self) -> list[str]:
        shards = [self.shard_exchange(t) for t in self.types]
        shards += [self.shard_exchange(t, bulk=True) for t in self.types if t in self.laned]
        return [self.incoming, *shards, self.retry, self.parked, self.results, self.results_unrouted]

    def queue_type(self, queue: str) -> str | None:
        """The integration type whose shard (or legacy queue) this is."""
        found = self.shard_of(queue)
        if found is not None:
            return found[0]
        return next((t for t in self.types if queue == self.legacy_queue(t)), None)


async def declare(channel: AbstractChannel, topology: Topology) -> None:
    """Declare every exchange, queue and binding. Idempotent; run by every process at start."""
    t = topology
    parked_x = await channel.declare_exchange(t.parked, ExchangeType.FANOUT, durable=True)
    parked_q = await channel.declare_queue(t.parked, durable=True, arguments={"x-queue-type": "classic"})
    await parked_q.bind(parked_x, "")

    await channel.declare_exchange(
        t.incoming, ExchangeType.TOPIC, durable=True, arguments={"alternate-exchange": t.parked}
    )
    for type_ in t.types:
        await declare_type(channel, t, type_)

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


async def declare_type(channel: AbstractChannel, topology: Topology, type_: str) -> None:
    """One type's shard exchanges and shard queues, of both lanes. Shards are bound in index order
    on a new exchange, so bucket i of the hash ring is shard i in both lanes (a key's bulk shard
    is its normal shard's twin)."""
    t = topology
    lanes = (False, True) if type_ in t.laned else (False,)
    for bulk in lanes:
        try:
            shards = await channel.declare_exchange(
                t.shard_exchange(type_, bulk=bulk),
                ExchangeType.X_CONSISTENT_HASH,
                durable=True,
                arguments={"hash-header": KEY_HEADER},
            )
        except aiormq.exceptions.ConnectionCommandInvalid as exc:
            if "exchange type" in str(exc):
                raise ConfigurationError(PLUGIN_MISSING) from None
            raise
        if not bulk:  # the bulk lane takes only what the ingress publishes to it
            await shards.bind(t.incoming, f"{type_}.#")
        for queue_name in t.queues(type_, bulk=bulk):
            queue = await channel.declare_queue(
                queue_name,
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-single-active-consumer": True,
                    "x-delivery-limit": t.delivery_limit,
                    "x-dead-letter-exchange": t.parked,
                },
            )
            await queue.bind(shards, "1")  # the weight: every shard takes an equal part of the keys


async def legacy_queues(connection: AbstractConnection, topology: Topology, types: tuple[str, ...]) -> list[str]:
    """The unsharded queues of `types` that still exist: unbound from the incoming exchange (nothing
    new reaches them), deleted when empty, returned (to be drained) while they hold messages."""
    found = []
    for type_ in types:
        name = topology.legacy_queue(type_)
        channel = await connection.channel()
        try:
            queue = await channel.get_queue(name, ensure=True)  # passive: 404 closes the channel
        except (aiormq.exceptions.ChannelNotFoundEntity, aio_pika.exceptions.ChannelClosed):
            continue
        else:
            await queue.unbind(topology.incoming, f"{type_}.#")
            if queue.declaration_result.message_count:
                found.append(name)
            else:
                with contextlib.suppress(aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(name, if_empty=True)
        finally:
            if not channel.is_closed:
                await channel.close()
    return found


async def delete(channel: AbstractChannel, topology: Topology) -> None:
    """Remove everything `declare` made (tests, or tearing an environment down)."""
    for name in topology.queue_names():
        await channel.queue_delete(name, if_unused=False, if_empty=False)
    for name in topology.exchange_names():
        await channel.exchange_delete(name, if_unused=False)
