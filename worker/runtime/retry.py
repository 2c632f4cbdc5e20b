"""Retrying and parking: where a failed message goes next.

    transient, attempts left    republished to the retry queue of its delay (the delays of
                                IW_RETRY_DELAYS, honouring the provider's Retry-After, with jitter);
                                the queue's TTL dead-letters it back to the incoming exchange
    otherwise                   parked with its reason (x-error headers), inspected and replayed
                                with `integration-worker dead`

Either way the original delivery is acknowledged only once the broker confirmed the new copy;
when the broker cannot take it, the delivery goes back to its queue instead.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime

from schemas.envelope import KEY_HEADER, dumps_envelope
from worker.core.settings import Settings
from worker.runtime.broker import Broker, Outgoing
from worker.runtime.dispatch import Message, Outcome
from worker.runtime.topology import Topology

ERROR_MAX = 2000


def retry_delay(delays: Sequence[float], attempt: int, retry_after: float | None) -> float:
    """The delay level for failure number `attempt` (1-based), honouring a provider's Retry-After."""
    index = min(attempt - 1, len(delays) - 1)
    if retry_after is not None:
        while index < len(delays) - 1 and delays[index] < retry_after:
            index += 1
    return delays[index]


class Retrier:
    def __init__(self, broker: Broker, topology: Topology, settings: Settings) -> None:
        self._broker = broker
        self._topology = topology
        self._settings = settings

    def plan(self, message: Message) -> tuple[Outgoing, Outcome]:
        """The copy to publish for a failed message, and what happens to it."""
        failure = message.failure
        assert failure is not None
        delivery = message.delivery
        envelope = message.envelope
        attempts = (envelope.attempt if envelope is not None else 0) + 1
        if envelope is not None and failure.kind == "transient" and attempts < self._settings.max_attempts:
            delay = retry_delay(self._settings.retry_delays, attempts, failure.retry_after)
            # a provider's Retry-After longer than every delay still holds: the copy waits that long
            wait = max(delay, failure.retry_after or 0.0)
            expiration = int(wait * 1000 * (1 + random.random() * self._settings.retry_jitter))
            return (
                Outgoing(
                    self._topology.retry,
                    envelope.routing_key,
                    dumps_envelope(envelope.next_attempt()),
                    message_id=envelope.id,
                    correlation_id=delivery.correlation_id,
                    reply_to=delivery.reply_to,  # a waiting caller gets the answer of a later attempt
                    headers={
                        "retry-delay": self._topology.delay_label(delay),
                        "x-last-error": failure.reason[:ERROR_MAX],
                        KEY_HEADER: message.key,  # back on its key's shard
                    },
                    expiration_ms=expiration,
                ),
                "retried",
            )
        routing_key = envelope.routing_key if envelope is not None else delivery.routing_key
        headers = {
            "x-error": failure.reason[:ERROR_MAX],
            "x-error-kind": failure.kind,
            "x-attempts": attempts,
            "x-parked-at": datetime.now(UTC).isoformat(),
            "x-routing-key": routing_key,
            "x-type": envelope.type if envelope is not None else message.queue_type,
            KEY_HEADER: message.key,  # a replay goes back to its key's shard
        }
        body = dumps_envelope(envelope) if envelope is not None else delivery.body
        return Outgoing(self._topology.parked, routing_key, body, message_id=message.id, headers=headers), "parked"

    async def send(self, messages: Sequence[Message]) -> list[Outcome]:
        """Publish each failed message's copy; its outcome, or "returned" (back to its queue)
        when the broker did not take the copy."""
        plans = [self.plan(message) for message in messages]
        confirmed = await self._broker.publish_many([outgoing for outgoing, _ in plans])
        return [outcome if error is None else "returned" for (_, outcome), error in zip(plans, confirmed, strict=True)]
