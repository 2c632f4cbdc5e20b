"""Acknowledging many deliveries with one frame.

Deliveries on a channel carry increasing tags. Once every delivery up to tag T is settled
(acknowledged or rejected by us), one `basic.ack(T, multiple=True)`, T the highest of them we
acknowledge, settles them all with the broker. (A `multiple` ack covers only deliveries still
outstanding, so rejected tags below T are not touched; T itself must be one we acknowledge.)

A slow message holds back the ones after it; when too many wait behind it they are
acknowledged one by one, so a straggler never fills the prefetch window. Rejections (requeue)
are sent at once. Frames are written synchronously, so two flushes never interleave.
"""

from __future__ import annotations

from collections import deque

from worker.runtime import amqp


class ChannelAcks:
    __slots__ = ("_max_held", "_order", "_settled", "_unsent", "channel")

    def __init__(self, channel: amqp.Channel, *, max_held: int) -> None:
        self.channel = channel
        self._order: deque[int] = deque()  # delivered tags, in order
        self._settled: dict[int, bool] = {}  # tag -> True (to acknowledge) / False (sent, or rejected)
        self._unsent = 0  # True entries of _settled
        self._max_held = max_held

    def delivered(self, tag: int) -> None:
        self._order.append(tag)

    def ack(self, tag: int) -> None:
        self._settled[tag] = True
        self._unsent += 1

    def reject(self, tag: int, *, requeue: bool) -> None:
        self.channel.reject(tag, requeue=requeue)
        if self._settled.get(tag):
            self._unsent -= 1
        self._settled[tag] = False

    def flush(self) -> None:
        upto: int | None = None
        order, settled = self._order, self._settled
        while order and order[0] in settled:
            tag = order.popleft()
            if settled.pop(tag):
                upto = tag
                self._unsent -= 1
        if upto is not None:
            self.channel.ack(upto, multiple=True)
        if self._unsent > self._max_held:  # a straggler holds back too many: acknowledge them alone
            for tag, unsent in settled.items():
                if unsent:
                    self.channel.ack(tag)
                    settled[tag] = False  # sent: behaves like a rejection from here on
            self._unsent = 0


class Acks:
    """Acknowledgement state per channel; a reconnect brings a new channel and fresh tags, and
    the tags of a closed channel are dropped unsent (the broker redelivers those)."""

    def __init__(self, *, max_held: int = 256) -> None:
        self._channels: dict[int, ChannelAcks] = {}
        self._max_held = max_held

    def _for(self, channel: amqp.Channel) -> ChannelAcks:
        state = self._channels.get(id(channel))
        if state is None or state.channel is not channel:
            for key in [k for k, s in self._channels.items() if s.channel.is_closed]:
                del self._channels[key]
            state = ChannelAcks(channel, max_held=self._max_held)
            self._channels[id(channel)] = state
        return state

    def delivered(self, channel: amqp.Channel, tag: int) -> None:
        self._for(channel).delivered(tag)

    def ack(self, channel: amqp.Channel, tag: int) -> None:
        """Mark as acknowledged; sent with the next flush."""
        self._for(channel).ack(tag)

    def reject(self, channel: amqp.Channel, tag: int, *, requeue: bool) -> None:
        if channel.is_closed:
            return
        self._for(channel).reject(tag, requeue=requeue)

    def flush(self) -> None:
        for state in list(self._channels.values()):
            if not state.channel.is_closed:
                try:
                    state.flush()
                except amqp.AmqpError:  # closing: the broker redelivers what was not acknowledged
                    continue
