"""A lean AMQP 0-9-1 client for the worker's two hot paths: consuming deliveries (with one
multiple-ack for many) and publishing with confirms (the frames of one event-loop turn in one
write). Everything else (declaring the topology, parked-message tools, reply queues) goes
through aio-pika. Figures and the frame codec: worker/runtime/amqp_frames.py.

A connection does not reconnect by itself: when it is lost every pending publish fails with
`ConnectionLost`, consumers are told through `closed`, and the owner (the publisher, the
intake) connects again under its tenacity policy. Deliveries of a lost connection are never
acknowledged; the broker redelivers them and the inbox turns repeats into duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pamqp.frame
from pamqp import commands as spec
from pamqp.base import Frame

from worker.runtime import amqp_frames as wire
from worker.runtime.amqp_frames import Properties


class AmqpError(Exception):
    pass


class ConnectionLost(AmqpError):
    pass


class ChannelClosed(AmqpError):
    pass


class Unroutable(AmqpError):
    """The broker returned a mandatory message: no queue is bound for its routing key."""


class Nacked(AmqpError):
    """The broker could not take the message (a queue refused it)."""


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


OnDelivery = Callable[[Delivery], None]
_CAPABILITIES: dict[str, Any] = {
    "publisher_confirms": True,
    "consumer_cancel_notify": True,
    "basic.nack": True,
    "connection.blocked": True,
    "authentication_failure_close": True,
}


class Connection(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.frame_max = 131072
        self.channels: dict[int, Channel] = {}
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiting: deque[tuple[type[Frame], asyncio.Future[Any]]] = deque()
        self._last_received = self.loop.time()
        self._heartbeat: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, *, name: str, heartbeat: int = 30, connect_within: float = 10.0) -> Connection:
        parts = urlsplit(url)
        tls = parts.scheme == "amqps"
        vhost = unquote(parts.path[1:]) if parts.path not in ("", "/") else "/"
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(connect_within):
            _, connection = await loop.create_connection(
                lambda: cls(name),
                parts.hostname or "127.0.0.1",
                parts.port or (5671 if tls else 5672),
                ssl=ssl.create_default_context() if tls else None,
            )
            try:
                await connection._handshake(
                    unquote(parts.username or "guest"), unquote(parts.password or "guest"), vhost, heartbeat
                )
            except BaseException:
                connection.abort()
                raise
        return connection

    async def _handshake(self, user: str, password: str, vhost: str, heartbeat: int) -> None:
        start = self._expect(spec.Connection.Start)
        assert self._transport is not None
        self._transport.write(b"AMQP\x00\x00\x09\x01")
        await start
        tune = self._expect(spec.Connection.Tune)
        properties: dict[str, Any] = {
            "connection_name": self.name,
            "product": "integration-worker",
            "capabilities": _CAPABILITIES,
        }
        self.send(
            0,
            spec.Connection.StartOk(
                client_properties=properties, mechanism="PLAIN", response=f"\0{user}\0{password}", locale="en_US"
            ),
        )
        tuned: spec.Connection.Tune = await tune
        self.frame_max = tuned.frame_max or self.frame_max
        beat = min(heartbeat, tuned.heartbeat) if tuned.heartbeat and heartbeat else heartbeat or tuned.heartbeat
        self.send(0, spec.Connection.TuneOk(channel_max=tuned.channel_max, frame_max=self.frame_max, heartbeat=beat))
        opened = self._expect(spec.Connection.OpenOk)
        self.send(0, spec.Connection.Open(virtual_host=vhost))
        await opened
        if beat:
            self._heartbeat = self.loop.create_task(self._beat(beat), name=f"amqp-heartbeat-{self.name}")

    async def _beat(self, seconds: int) -> None:
        while True:
            await asyncio.sleep(seconds / 2)
            if self.loop.time() - self._last_received > seconds * 2:
                self.abort(ConnectionLost("the broker stopped answering (missed heartbeats)"))
                return
            self.write(wire.HEARTBEAT_FRAME)

    async def channel(self, *, confirms: bool = False) -> Channel:
        number = next(n for n in range(1, 2048) if n not in self.channels)
        channel = Channel(self, number)
        self.channels[number] = channel
        await channel.rpc(spec.Channel.Open(), spec.Channel.OpenOk)
        if confirms:
            await channel.rpc(spec.Confirm.Select(), spec.Confirm.SelectOk)
            channel.confirming = True
        return channel

    @property
    def is_closed(self) -> bool:
        return self.closed.done()

    # --- writing ----------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._transport is None or self.closed.done():
            raise ConnectionLost("the broker connection is closed")
        self._transport.write(data)

    def send(self, channel: int, frame: Frame) -> None:
        self.write(pamqp.frame.marshal(frame, channel))

    def _expect(self, kind: type[Frame]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        self._waiting.append((kind, future))
        return future

    async def close(self, wait: float = 2.0) -> None:
        if self.closed.done():
            return
        ok = self._expect(spec.Connection.CloseOk)
        with contextlib.suppress(AmqpError, TimeoutError):
            self.send(0, spec.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
            await asyncio.wait_for(ok, wait)
        self.abort(ConnectionLost("closed"))
        if ok.done() and not ok.cancelled():
            ok.exception()  # retrieved either way

    def abort(self, reason: BaseException | None = None) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._lost(reason or ConnectionLost("aborted"))

    # --- reading ----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(ConnectionLost(f"connection lost: {exc!r}" if exc else "connection closed by the broker"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        self._last_received = self.loop.time()
        position = 0
        try:
            while (frame := wire.split_frame(buffer, position)) is not None:
                kind, number, start, following = frame
                payload = bytes(buffer[start : following - 1])
                if number == 0:
                    self._on_connection_frame(kind, bytes(buffer[position:following]))
                elif (channel := self.channels.get(number)) is not None:
                    channel.on_frame(kind, payload, buffer, position, following)
                position = following
        except Exception as exc:  # a frame we cannot read: nothing on this connection can be trusted
            self.abort(ConnectionLost(f"unreadable frame from the broker: {exc!r}"))
            return
        del buffer[:position]

    def _on_connection_frame(self, kind: int, raw: bytes) -> None:
        if kind == wire.FRAME_HEARTBEAT:
            return
        _, _, frame = pamqp.frame.unmarshal(raw)
        if isinstance(frame, spec.Connection.Close):
            with contextlib.suppress(ConnectionLost):
                self.send(0, spec.Connection.CloseOk())
            self.abort(ConnectionLost(f"the broker closed the connection: {frame.reply_code} {frame.reply_text}"))
            return
        if isinstance(frame, spec.Connection.Blocked | spec.Connection.Unblocked):
            return  # publishes wait for their confirms meanwhile; their timeouts say the rest
        if self._waiting and isinstance(frame, self._waiting[0][0]):
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_result(frame)

    def _lost(self, reason: BaseException) -> None:
        if self.closed.done():
            return
        self.closed.set_exception(reason)
        self.closed.exception()  # retrieved: owners that never await it do not warn
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(reason)
        for channel in list(self.channels.values()):
            channel.fail(reason)
        self.channels.clear()


class Channel:
    def __init__(self, connection: Connection, number: int) -> None:
        self.connection = connection
        self.number = number
        self.confirming = False
        self.consumers: dict[str, OnDelivery] = {}
        self.on_cancel: Callable[[str], None] | None = None
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
            raise ChannelClosed(str(self._closed))

    # --- consuming -------------------------------------------------------------------------------------

    def ack(self, tag: int, *, multiple: bool = False) -> None:
        self._check()
        self.connection.write(wire.ack_frame(self.number, tag, multiple=multiple))

    def reject(self, tag: int, *, requeue: bool) -> None:
        self._check()
        self.connection.write(wire.reject_frame(self.number, tag, requeue=requeue))

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
            else:
                on_delivery(
                    Delivery(
                        self,
                        consumer_tag,
                        tag,
                        redelivered,
                        routing_key,
                        body,
                        props.message_id,
                        props.reply_to,
                        props.correlation_id,
                    )
                )
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
            self.fail(ChannelClosed(f"the broker closed the channel: {frame.reply_code} {frame.reply_text}"))
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
