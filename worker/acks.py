"""Acknowledging many deliveries with one frame.

Deliveries on a channel carry increasing tags. Once every delivery up to tag T is settled
(acknowledged or rejected by us), one `basic.ack(T, multiple=True)`, T the highest of them we
acknowledge, settles them all with the broker: one frame and one write instead of one per
message. (A `multiple` ack covers only deliveries still outstanding, so rejected tags below T
are not touched; T itself must be one we acknowledge, never a rejected one.)

A slow message holds back the ones after it; when too many wait behind it they are
acknowledged one by one, so a straggler never fills the prefetch window. Rejections
(requeue) are sent at once.

Frames of one channel are computed and handed to the connection's writer under one lock:
two flushes racing could otherwise hand over "up to 95" before "up to 94", and the broker
closes the channel on the second (its target is no longer outstanding).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import aiormq


class ChannelAcks:
    def __init__(self, channel: aiormq.abc.AbstractChannel, *, max_held: int) -> None:
        self.channel = channel
        self._order: deque[int] = deque()  # delivered tags, in order
        self._settled: dict[int, bool] = {}  # tag -> True (ack) / False (rejected), not yet sent
        self._max_held = max_held
        self._lock = asyncio.Lock()

    def delivered(self, tag: int) -> None:
        self._order.append(tag)

    def ack(self, tag: int) -> None:
        self._settled[tag] = True

    async def reject(self, tag: int, *, requeue: bool) -> None:
        async with self._lock:
            await self.channel.basic_reject(delivery_tag=tag, requeue=requeue)
            self._settled[tag] = False

    async def flush(self) -> None:
        async with self._lock:
            await self._flush()

    async def _flush(self) -> None:
        upto: int | None = None
        while self._order and self._order[0] in self._settled:
            tag = self._order.popleft()
            if self._settled.pop(tag):
                upto = tag
        if upto is not None:
            await self.channel.basic_ack(delivery_tag=upto, multiple=True, wait=False)
        held = [tag for tag, acked in self._settled.items() if acked]
        if len(held) > self._max_held:  # a straggler holds back too many: acknowledge them alone
            for tag in sorted(held):
                await self.channel.basic_ack(delivery_tag=tag, wait=False)
                self._settled[tag] = False  # sent: behaves like a rejection from here on


class Acks:
    """Per-channel acknowledgement state; a reconnect brings a new channel and fresh tags."""

    def __init__(self, *, max_held: int = 256) -> None:
        self._channels: dict[int, ChannelAcks] = {}
        self._max_held = max_held

    def _for(self, channel: Any) -> ChannelAcks:
        state = self._channels.get(id(channel))
        if state is None or state.channel is not channel:
            for key in [k for k, s in self._channels.items() if s.channel.is_closed]:
                del self._channels[key]
            state = ChannelAcks(channel, max_held=self._max_held)
            self._channels[id(channel)] = state
        return state

    def delivered(self, channel: Any, tag: int) -> None:
        self._for(channel).delivered(tag)

    def ack(self, channel: Any, tag: int) -> None:
        """Mark as acknowledged; sent with the next flush."""
        self._for(channel).ack(tag)

    async def reject(self, channel: Any, tag: int, *, requeue: bool) -> None:
        await self._for(channel).reject(tag, requeue=requeue)

    async def flush(self) -> None:
        for state in list(self._channels.values()):
            if not state.channel.is_closed:
                await state.flush()
