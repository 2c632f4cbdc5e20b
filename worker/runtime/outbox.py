"""Publishing what units committed to the outbox, and the relay for what could not go at once.

After a commit, its outbox items are published (confirms pipelined, the frames in one write).
Those the broker took are deleted from the `outbox` table with the next commit (in its
transaction: no transaction, no disk flush of their own), or within a second when no commit
comes. What the broker does not take (down, a confirm that never came) stays in the table, and
the relay (a maintenance job, one worker at a time) publishes it later. A reply whose caller is
gone (its queue deleted: the broker returns it) is done, not retried: nobody is left to answer.
Consumers deduplicate on event ids, so an item published twice (a crash between the confirm and
the delete) is harmless.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence

import asyncpg

from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.runtime import metrics, store
from worker.runtime.broker import Broker, BrokerUnavailable, Outgoing, Unroutable
from worker.sdk.unit import OutboxItem

RELAY_BATCH = 500
DELETE_WITHIN = 1.0  # seconds a published item waits for a commit to delete it with


def caller_gone(item: OutboxItem, outcome: BrokerUnavailable | None) -> bool:
    """A reply (default exchange) the broker returned: the caller's queue is gone."""
    return item.exchange == "" and isinstance(outcome, Unroutable)


def _outgoing(item: OutboxItem) -> Outgoing:
    return Outgoing(
        item.exchange,
        item.routing_key,
        item.body,
        message_id=item.id,
        correlation_id=item.correlation_id,
        headers=item.headers,
    )


class Outbox:
    def __init__(self, pool: Callable[[], asyncpg.Pool], broker: Broker) -> None:
        self._pool = pool
        self._broker = broker
        self._publishing: set[asyncio.Task[bool]] = set()
        self._to_delete: list[str] = []  # taken by the broker, not deleted yet
        self._deleting: asyncio.TimerHandle | None = None
        self.log = get_logger(component="outbox")

    async def publish(self, items: Sequence[OutboxItem]) -> bool:
        """Publish committed items and delete those the broker took; False when some are left
        for the relay."""
        if not items:
            return True
        outcomes = await self._broker.publish_many([_outgoing(item) for item in items])
        self._count(items, outcomes)
        done = [
            item.id
            for item, outcome in zip(items, outcomes, strict=True)
            if outcome is None or caller_gone(item, outcome)
        ]
        if done:
            self._to_delete += done
            if self._deleting is None:
                self._deleting = asyncio.get_running_loop().call_later(DELETE_WITHIN, self._delete_soon)
        if len(done) == len(items):
            return True
        errors = {f"{type(o).__name__}: {o}" for o in outcomes if o is not None}
        self.log.warning(
            "outbox items left for the relay", error=redact("; ".join(sorted(errors))), count=len(items) - len(done)
        )
        return False

    def _count(self, items: Sequence[OutboxItem], outcomes: Sequence[BrokerUnavailable | None]) -> None:
        """`iw_result_events_total`, by event: the result events the broker took."""
        results = self._broker.topology.results
        taken = Counter(
            item.routing_key
            for item, outcome in zip(items, outcomes, strict=True)
            if outcome is None and item.exchange == results
        )
        for event, count in taken.items():
            metrics.child(metrics.EVENTS_PUBLISHED, event).inc(count)

    def take_published(self) -> list[str]:
        """The ids published and not deleted yet: a commit deletes them in its transaction (and
        gives them back with `untake` if it does not commit)."""
        taken, self._to_delete = self._to_delete, []
        return taken

    def untake(self, ids: Sequence[str]) -> None:
        self._to_delete += ids

    def _delete_soon(self) -> None:
        self._deleting = None
        if self._to_delete:
            task = asyncio.get_running_loop().create_task(self.delete_published())
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def delete_published(self) -> bool:
        """Delete what was published (no commit came to do it); kept for later when it fails."""
        ids = self.take_published()
        if not ids:
            return True
        try:
            await store.delete_outbox(self._pool(), ids)
        except (asyncpg.PostgresError, OSError) as exc:  # published; the relay may send them again
            self.untake(ids)
            self.log.warning("published outbox items not deleted yet", error=redact(str(exc)), count=len(ids))
            return False
        return True

    def publish_soon(self, items: Sequence[OutboxItem]) -> None:
        """Publish in the background: the acknowledgements of a batch do not wait for it."""
        if not items:
            return
        task = asyncio.get_running_loop().create_task(self.publish(items))
        self._publishing.add(task)
        task.add_done_callback(self._published)

    def _published(self, task: asyncio.Task[bool]) -> None:
        self._publishing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.warning("outbox publish failed; the relay will send them", error=redact(str(task.exception())))

    async def drain(self, seconds: float) -> None:
        """Wait (at most `seconds`) for background publishes, then delete what they published;
        what is left, the relay sends."""
        if self._publishing:
            await asyncio.wait(set(self._publishing), timeout=max(0.0, seconds))
        if self._deleting is not None:
            self._deleting.cancel()
            self._deleting = None
        await self.delete_published()

    async def relay(self, *, older_than: float) -> int:
        """Publish items committed more than `older_than` seconds ago and still in the table."""
        relayed = 0
        async with self._pool().acquire() as conn, conn.transaction():
            due = await store.due_outbox(conn, older_than, RELAY_BATCH)
            if due:
                outcomes = await self._broker.publish_many([_outgoing(item) for item in due])
                self._count(due, outcomes)
                done = [
                    item.id
                    for item, outcome in zip(due, outcomes, strict=True)
                    if outcome is None or caller_gone(item, outcome)
                ]
                await store.delete_outbox(conn, done)
                relayed = len(done)
        if relayed:
            self.log.info("outbox relayed", count=relayed)
        return relayed
