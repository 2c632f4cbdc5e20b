"""One AMQP connection: the handshake (PLAIN or EXTERNAL, over TLS as the URL says), heartbeats,
frames read off the socket and handed to their channel, and every waiter failed when the
connection is lost.

Two ways the broker slows its publishers down, both seen here:
    connection.blocked   a memory or disk alarm (the broker says so at the first publish after
                         it): `blocked` holds the broker's reason until `connection.unblocked`;
                         the publishes waiting for a confirm fail at once (BrokerBlocked: the
                         broker may still take them later, and repeats are deduplicated), and
                         new ones fail before they are written
    TCP back-pressure    the broker reads slower than we write: the transport pauses writing
                         above WRITE_BUFFER_HIGH bytes, and `writable()` waits for it to drain
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

import pamqp.frame
from pamqp import commands as spec
from pamqp.base import Frame

from worker.runtime.amqp import frames as wire
from worker.runtime.amqp.channel import Channel
from worker.runtime.amqp.types import AmqpError, Blocked, ConnectionLost, closed_by_broker
from worker.runtime.amqp.url import Endpoint, parse

WRITE_BUFFER_HIGH = 1024 * 1024  # bytes written and not yet taken by the socket before writers wait

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
        self._writable = asyncio.Event()
        self._writable.set()
        self._later: list[bytes] = []
        self.blocked: str | None = None  # the broker's reason while it blocks publishers (an alarm)
        self.on_blocked: Callable[[str | None], None] | None = None  # told when `blocked` changes
        self.endpoint: Endpoint | None = None

    @classmethod
    async def open(cls, url: str | Endpoint, *, name: str) -> Connection:
        endpoint = parse(url) if isinstance(url, str) else url
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(endpoint.connect_timeout):
            _, connection = await loop.create_connection(
                lambda: cls(name),
                endpoint.host,
                endpoint.port,
                ssl=endpoint.tls,
                server_hostname=endpoint.host if endpoint.tls is not None else None,
            )
            connection.endpoint = endpoint
            try:
                await connection._handshake(endpoint)
            except BaseException:
                connection.abort()
                raise
        return connection

    async def _handshake(self, endpoint: Endpoint) -> None:
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
                client_properties=properties,
                mechanism=endpoint.mechanism,
                response=endpoint.sasl_response().decode(),
                locale="en_US",
            ),
        )
        tuned: spec.Connection.Tune = await tune
        self.frame_max = tuned.frame_max or self.frame_max
        heartbeat = endpoint.heartbeat
        beat = min(heartbeat, tuned.heartbeat) if tuned.heartbeat and heartbeat else heartbeat or tuned.heartbeat
        self.send(0, spec.Connection.TuneOk(channel_max=tuned.channel_max, frame_max=self.frame_max, heartbeat=beat))
        opened = self._expect(spec.Connection.OpenOk)
        self.send(0, spec.Connection.Open(virtual_host=endpoint.vhost))
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
        if self._later:  # what was written for later goes first: frames keep their order
            self._later.append(data)
            data = b"".join(self._later)
            self._later.clear()
        self._transport.write(data)

    def write_later(self, data: bytes) -> None:
        """Write with the other frames of this loop turn, in one system call (the acknowledgements
        of a wave spread over the shards' channels: measured, one write each cost 5% of a busy
        worker's time)."""
        if self._transport is None or self.closed.done():
            raise ConnectionLost("the broker connection is closed")
        if not self._later:
            self.loop.call_soon(self._write_later)
        self._later.append(data)

    def _write_later(self) -> None:
        if self._later and self._transport is not None and not self.closed.done():
            data = b"".join(self._later)
            self._later.clear()
            self._transport.write(data)

    @property
    def is_writable(self) -> bool:
        """False while the socket holds more than WRITE_BUFFER_HIGH bytes the broker did not read."""
        return self._writable.is_set()

    async def writable(self) -> None:
        """Until the socket took what was written (the caller bounds the wait)."""
        await self._writable.wait()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

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
        with contextlib.suppress(AttributeError, NotImplementedError):
            transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)  # type: ignore[attr-defined]

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
            self.abort(closed_by_broker(frame.reply_code or 0, str(frame.reply_text)))
            return
        if isinstance(frame, spec.Connection.Blocked | spec.Connection.Unblocked):
            self.blocked = (frame.reason or "blocked") if isinstance(frame, spec.Connection.Blocked) else None
            if self.blocked:
                for channel in self.channels.values():
                    channel.abandon_unconfirmed(Blocked(f"the broker blocks publishers: {self.blocked}"))
            if self.on_blocked is not None:
                self.on_blocked(self.blocked)
            return
        if self._waiting and isinstance(frame, self._waiting[0][0]):
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_result(frame)

    def _lost(self, reason: BaseException) -> None:
        if self.closed.done():
            return
        self.closed.set_exception(reason)
        self.closed.exception()  # retrieved: owners that never await it do not warn
        self._writable.set()  # writers waiting for the socket find it closed
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(reason)
        for channel in list(self.channels.values()):
            channel.fail(reason)
        self.channels.clear()
