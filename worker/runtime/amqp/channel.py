"""One AMQP channel: set-up calls, consumers fed from hand-decoded deliveries, acks, and
publishes with confirms (the frames of one loop turn in one write)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pamqp.frame
from pamqp import commands as spec
from pamqp.base import Frame

from worker.runtime.amqp import frames as wire
from worker.runtime.amqp.frames import Properties
from worker.runtime.amqp.types import AmqpError, ChannelClosed, ConnectionLost, Link, Nacked, Unroutable


@dataclass(slots=True)
class Delivery:
    channel: Channel
    consumer_tag: str
    tag: int
    redelivered: bool
    routing_key: str
    body: bytes
    message_id: str | None
    reply_to: str | None
    correlation_id: str | None
    headers: dict[str, Any] | None = None  # the message's AMQP headers (`iw-key`, `x-delivery-count`, ...)
    timestamp: int | None = None


OnDelivery = Callable[[Delivery], None]


class Channel:
    def __init__(self, connection: Link, number: int) -> None:
        self.connection = connection
        self.number = number
        self.confirming = False
        self.consumers: dict[str, OnDelivery] = {}
        self.on_cancel: Callable[[str], None] | None = None
        # told when a consumer's callback raised (the delivery went back to its queue)
        self.on_consumer_error: Callable[[Delivery, Exception], None] | None = None
        # called once when the broker closes this channel (the connection stays open)
        self.on_broker_close: Callable[[BaseException], None] | None = None
        self._rpc: deque[tuple[type[Frame], asyncio.Future[Any]]] = deque()
        self._closed: BaseException | None = None
        # content being received: ("deliver" | "return", arguments), then its header and body
        self._content: tuple[str, Any] | None = None
        self._properties = Properties()
        self._size = 0
        self._parts: list[bytes] = []
        self._received = 0
        # publisher confirms
        self._next_tag = 1
        self._unconfirmed: dict[int, tuple[asyncio.Future[None], str | None]] = {}
        self._returned: dict[int, Unroutable] = {}
        self._outgoing: list[bytes] = []

    # --- set-up -----------------------------------------------------------------------------------------

    async def rpc(self, frame: Frame, reply: type[Frame]) -> Any:
        self._check()
        future: asyncio.Future[Any] = self.connection.loop.create_future()
        self._rpc.append((reply, future))
        self.connection.send(self.number, frame)
        return await future

    async def qos(self, prefetch_count: int) -> None:
        await self.rpc(spec.Basic.Qos(prefetch_count=prefetch_count), spec.Basic.QosOk)

    async def consume(self, queue: str, on_delivery: OnDelivery) -> str:
        # The tag is ours and registered first: deliveries may follow Consume-Ok in the same read.
        tag = f"{self.connection.name}/{queue}/{uuid.uuid4().hex[:12]}"
        self.consumers[tag] = on_delivery
        try:
            await self.rpc(spec.Basic.Consume(queue=queue, consumer_tag=tag), spec.Basic.ConsumeOk)
        except BaseException:
            self.consumers.pop(tag, None)
            raise
        return tag

    async def cancel(self, consumer_tag: str) -> None:
        if self._closed is None:
            await self.rpc(spec.Basic.Cancel(consumer_tag=consumer_tag), spec.Basic.CancelOk)
        self.consumers.pop(consumer_tag, None)

    @property
    def is_closed(self) -> bool:
        return self._closed is not None

    def _check(self) -> None:
        if self._closed is not None:
            raise ChannelClosed(str(self._closed), code=getattr(self._closed, "code", None))

    # --- consuming -------------------------------------------------------------------------------------

    def ack(self, tag: int, *, multiple: bool = False) -> None:
        self._check()
        self.connection.write_later(wire.ack_frame(self.number, tag, multiple=multiple))

    def reject(self, tag: int, *, requeue: bool) -> None:
        self._check()
        self.connection.write_later(wire.reject_frame(self.number, tag, requeue=requeue))

    # --- publishing ------------------------------------------------------------------------------------

    def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Properties, *, mandatory: bool = True
    ) -> asyncio.Future[None]:
        """Queue a publish; its frames go out with the others of this loop turn in one write.
        The future resolves when the broker confirms it (Unroutable / Nacked / ConnectionLost)."""
        self._check()
        frames = wire.publish_frames(
            self.number,
            exchange,
            routing_key,
            body,
            properties,
            mandatory=mandatory,
            frame_max=self.connection.frame_max,
        )
        future: asyncio.Future[None] = self.connection.loop.create_future()
        if self.confirming:
            self._unconfirmed[self._next_tag] = (future, properties.message_id)
            self._next_tag += 1
        else:
            future.set_result(None)
        if not self._outgoing:
            self.connection.loop.call_soon(self._flush)
        self._outgoing.append(frames)
        return future

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        try:
            self.connection.write(b"".join(outgoing))
        except ConnectionLost as exc:
            self.fail(exc)

    def abandon_unconfirmed(self, reason: AmqpError) -> None:
        """Stop waiting for the confirms due (the broker stopped reading: an alarm). Their tags stay
        counted, so confirms that come later are matched, to futures already answered."""
        for future, _ in self._unconfirmed.values():
            if not future.done():
                future.set_exception(reason)
                future.exception()  # retrieved: a publisher that moved on does not warn

    def _confirm(self, tag: int, multiple: bool, error: AmqpError | None) -> None:
        unconfirmed = self._unconfirmed
        if multiple:
            tags = []
            for each in unconfirmed:  # in publishing order
                if each > tag:
                    break
                tags.append(each)
        else:
            tags = [tag] if tag in unconfirmed else []
        for each in tags:
            future, _ = unconfirmed.pop(each)
            failure = self._returned.pop(each, None) or error
            if future.done():
                continue
            if failure is None:
                future.set_result(None)
            else:
                future.set_exception(failure)

    # --- frames from the connection -------------------------------------------------------------------

    def on_frame(self, kind: int, payload: bytes, buffer: bytearray, start: int, end: int) -> None:
        if kind == wire.FRAME_BODY:
            self._parts.append(payload)
            self._received += len(payload)
            if self._received >= self._size:
                self._complete()
            return
        if kind == wire.FRAME_HEADER:
            self._size, self._properties = wire.parse_header(payload)
            self._parts, self._received = [], 0
            if self._size == 0:
                self._complete()
            return
        if kind != wire.FRAME_METHOD:
            return
        class_id, method_id = wire.method_ids(payload)
        if class_id == wire.BASIC:
            if method_id == wire.BASIC_DELIVER:
                self._content = ("deliver", wire.parse_deliver(payload))
                return
            if method_id in (wire.BASIC_ACK, wire.BASIC_NACK):
                tag, multiple = wire.parse_confirm(payload)
                self._confirm(tag, multiple, None if method_id == wire.BASIC_ACK else Nacked("the broker nacked it"))
                return
            if method_id == wire.BASIC_RETURN:
                self._content = ("return", wire.parse_return(payload))
                return
        _, _, frame = pamqp.frame.unmarshal(bytes(buffer[start:end]))
        if isinstance(frame, Frame):
            self._on_method(frame)

    def _complete(self) -> None:
        content, self._content = self._content, None
        body = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts = []
        if content is None:
            return
        props = self._properties
        if content[0] == "deliver":
            consumer_tag, tag, redelivered, routing_key = content[1]
            on_delivery = self.consumers.get(consumer_tag)
            if on_delivery is None:  # a consumer cancelled meanwhile: back to the queue
                self.reject(tag, requeue=True)
                return
            delivery = Delivery(
                self,
                consumer_tag,
                tag,
                redelivered,
                routing_key,
                body,
                props.message_id,
                props.reply_to,
                props.correlation_id,
                props.headers,
                props.timestamp,
            )
            try:
                on_delivery(delivery)
            except Exception as exc:  # the consumer's bug: this delivery goes back, the connection stays
                self.reject(tag, requeue=True)
                if self.on_consumer_error is not None:
                    self.on_consumer_error(delivery, exc)
            return
        code, text, exchange, routing_key = content[1]
        for tag, (_, message_id) in self._unconfirmed.items():  # the earliest unconfirmed with its id
            if message_id == props.message_id and tag not in self._returned:
                self._returned[tag] = Unroutable(f"{code} {text}: no queue for {exchange or '(default)'}/{routing_key}")
                break

    def _on_method(self, frame: Frame) -> None:
        if isinstance(frame, spec.Channel.Close):
            with contextlib.suppress(ConnectionLost):
                self.connection.send(self.number, spec.Channel.CloseOk())
            self.connection.channels.pop(self.number, None)
            reason = ChannelClosed(
                f"the broker closed the channel: {frame.reply_code} {frame.reply_text}", code=frame.reply_code
            )
            self.fail(reason)
            if self.on_broker_close is not None:
                self.on_broker_close(reason)
            return
        if isinstance(frame, spec.Basic.Cancel):  # the queue went away: the owner subscribes again
            tag = str(frame.consumer_tag)
            self.consumers.pop(tag, None)
            if self.on_cancel is not None:
                self.on_cancel(tag)
            return
        if self._rpc and isinstance(frame, self._rpc[0][0]):
            _, future = self._rpc.popleft()
            if not future.done():
                future.set_result(frame)

    def fail(self, reason: BaseException) -> None:
        if self._closed is not None:
            return
        self._closed = reason
        for future, _ in self._unconfirmed.values():
            if not future.done():
                future.set_exception(reason)
        self._unconfirmed.clear()
        while self._rpc:
            _, future = self._rpc.popleft()
            if not future.done():
                future.set_exception(reason)
        if self.on_cancel is not None:
            for tag in list(self.consumers):
                self.on_cancel(tag)
        self.consumers.clear()

    async def close(self) -> None:
        if self._closed is None and not self.connection.is_closed:
            with contextlib.suppress(AmqpError):
                await self.rpc(
                    spec.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), spec.Channel.CloseOk
                )
        self.connection.channels.pop(self.number, None)
        self.fail(ChannelClosed("closed"))
