"""Admission: which of the deliveries a worker has read ahead run next.

    deliveries (read ahead, per shard)
      -> per key, a chain: a message runs only once the one before it of its key is settled
         (committed, or on a retry or the parking queue), so the events of one key run one
         after the other, in the order the broker took them
      -> per tenant (team), the chains' heads, taken round robin: a team's burst of 50,000
         events does not make another team's event wait behind it, and takes what nobody else uses
      -> batches of at most IW_BATCH_SIZE, while fewer than IW_CONCURRENCY messages are in flight
         (a batch waits up to IW_BATCH_LINGER to fill up once its first message is runnable;
         under a backlog it waits for half a batch of free slots: a settled message does not
         start a batch of one)

A message that goes back to its queue ("returned": the database and the broker away) takes the
messages waiting behind it on its key back with it, in order, so the broker delivers them again
in their order. A shard being handed over (or a lost connection) withdraws its messages that have
not started: the broker gets them back when the shard's channel closes.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Iterable

from worker.runtime.dispatch import Message

ChainKey = tuple[str, str]  # (shard, key): a key's chain, across the shard's two lanes


class Admission:
    def __init__(
        self,
        *,
        capacity: int,
        batch_size: int,
        linger: float,
        start_batch: Callable[[list[Message]], None],
    ) -> None:
        self.capacity = capacity
        self.batch_size = batch_size
        self.linger = linger
        self._start_batch = start_batch
        self._chains: dict[ChainKey, deque[Message]] = {}  # waiting behind their key's head
        self._running: set[ChainKey] = set()  # keys whose head is admitted
        self._returning: dict[ChainKey, list[Message]] = {}  # going back to the queue behind a returned head
        self._runnable: dict[str, deque[Message]] = {}  # per tenant: heads that may run now
        self._ring: deque[str] = deque()  # tenants with runnable messages, in turn
        self._runnable_count = 0
        self.admitted = 0
        self._admitted_by_queue: Counter[str] = Counter()
        self._idle: dict[str, list[asyncio.Future[None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.paused = False

    # --- in ----------------------------------------------------------------------------------------------

    def add(self, message: Message) -> None:
        chain_key = (message.shard, message.key)
        returning = self._returning.get(chain_key)
        if returning is not None:  # its key goes back to the queue: it goes after them
            returning.append(message)
            return
        chain = self._chains.get(chain_key)
        if chain is not None:
            chain.append(message)
            return
        self._chains[chain_key] = deque()
        self._make_runnable(message)

    def _make_runnable(self, message: Message) -> None:
        tenant = message.tenant
        waiting = self._runnable.get(tenant)
        if waiting is None:
            waiting = self._runnable[tenant] = deque()
            self._ring.append(tenant)
        waiting.append(message)
        self._runnable_count += 1
        self._consider()

    # --- batches -----------------------------------------------------------------------------------------

    def _consider(self) -> None:
        """A full batch at once when the slots allow it; under a backlog (a batch's worth
        runnable), a part of one once half a batch of slots is free, no fewer: settling one
        message must not start a batch of one; with few runnable, what there is after the linger."""
        if self.paused or not self._runnable_count:
            return
        free = self.capacity - self.admitted
        backlog = self._runnable_count >= self.batch_size
        if free <= 0 or (backlog and free < max(1, self.batch_size // 2)):
            return  # the next settled wave calls again
        if backlog and free >= self.batch_size:
            self._cut()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._on_linger)

    def _on_linger(self) -> None:
        self._timer = None
        self._cut()

    def _cut(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while not self.paused and self._runnable_count:
            free = self.capacity - self.admitted
            size = min(self.batch_size, self._runnable_count, free)
            if size <= 0 or (self._runnable_count >= self.batch_size and free < max(1, self.batch_size // 2)):
                break
            batch = self._take(size)
            self.admitted += len(batch)
            self._admit(batch)
            if size < self.batch_size:
                break  # a part of a batch: what comes next lingers for more
        self._consider()

    def _admit(self, batch: list[Message]) -> None:
        for message in batch:
            self._admitted_by_queue[message.queue] += 1
            self._running.add((message.shard, message.key))
        self._start_batch(batch)

    def _take(self, count: int) -> list[Message]:
        """Up to `count` runnable messages, one tenant after the other."""
        batch: list[Message] = []
        runnable, ring = self._runnable, self._ring
        while len(batch) < count and ring:
            tenant = ring[0]
            waiting = runnable[tenant]
            batch.append(waiting.popleft())
            if waiting:
                ring.rotate(-1)
            else:
                ring.popleft()
                del runnable[tenant]
        self._runnable_count -= len(batch)
        return batch

    # --- out ---------------------------------------------------------------------------------------------

    def settled(self, message: Message, *, returned: bool = False) -> None:
        """`message` (admitted) is settled: the next of its key may run. Returned: the messages
        waiting behind it go back too (`take_returning`), in order, after it."""
        self.admitted -= 1
        queue = message.queue
        self._admitted_by_queue[queue] -= 1
        if not self._admitted_by_queue[queue]:
            del self._admitted_by_queue[queue]
            for waiter in self._idle.pop(queue, ()):
                if not waiter.done():
                    waiter.set_result(None)
        chain_key = (message.shard, message.key)
        self._running.discard(chain_key)
        chain = self._chains.get(chain_key)
        if returned:
            self._chains.pop(chain_key, None)
            self._returning[chain_key] = list(chain or ())
        elif chain:
            self._make_runnable(chain.popleft())
        else:
            self._chains.pop(chain_key, None)
        self._consider()

    def take_returning(self, message: Message) -> list[Message]:
        """The messages that go back to the queue behind `message`, returned before."""
        return self._returning.pop((message.shard, message.key), [])

    def withdraw(self, queues: Iterable[str]) -> list[Message]:
        """Drop the messages of these queues that have not started (a shard handed over, a lost
        channel): the broker gets them back when the channel closes. Admitted ones run on; a
        chain whose head was dropped goes on with its next message of another queue (the other
        lane of the shard)."""
        gone = set(queues)
        if not gone:
            return []
        dropped: list[Message] = []
        heads: set[ChainKey] = set()
        for tenant in list(self._runnable):
            kept: deque[Message] = deque()
            for message in self._runnable[tenant]:
                if message.queue in gone:
                    dropped.append(message)
                else:
                    kept.append(message)
                    heads.add((message.shard, message.key))
            if kept:
                self._runnable[tenant] = kept
            else:
                del self._runnable[tenant]
                self._ring.remove(tenant)
        self._runnable_count -= len(dropped)
        for chain_key in list(self._chains):
            chain = self._chains[chain_key]
            dropped += [m for m in chain if m.queue in gone]
            rest = deque(m for m in chain if m.queue not in gone)
            if chain_key in self._running or chain_key in heads:
                self._chains[chain_key] = rest  # its head runs, or may: what comes again waits for it
            elif rest:
                self._chains[chain_key] = rest
                self._make_runnable(rest.popleft())
            else:
                del self._chains[chain_key]
        for chain_key in list(self._returning):
            returning = self._returning[chain_key]
            dropped += [m for m in returning if m.queue in gone]
            self._returning[chain_key] = [m for m in returning if m.queue not in gone]
        return dropped

    async def idle(self, queue: str) -> None:
        """Until no admitted message of `queue` is in flight."""
        if not self._admitted_by_queue.get(queue):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle.setdefault(queue, []).append(waiter)
        await waiter

    def pause(self) -> None:
        """Admit nothing more (stopping)."""
        self.paused = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def waiting(self) -> int:
        """Messages read ahead and not admitted: runnable, or behind their key."""
        return self._runnable_count + sum(len(chain) for chain in self._chains.values())

    def waiting_of(self, type_: str) -> int:
        """`waiting`, of one type (counted when asked: a metric's scrape, not the hot path)."""
        runnable = sum(m.queue_type == type_ for waiting in self._runnable.values() for m in waiting)
        return runnable + sum(m.queue_type == type_ for chain in self._chains.values() for m in chain)
