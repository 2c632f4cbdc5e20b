"""RabbitMQ: the management connection (aio-pika: the topology, reply queues, parked messages) and
the publisher (worker/runtime/amqp/: confirms pipelined, the publishes of one loop turn in one
write). The publisher reconnects by itself; while it is away, publishing raises
`BrokerUnavailable` at once (the ingress answers 503, the worker leaves the message unacked).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.core.settings import ConfigurationError
from worker.runtime import amqp, metrics
from worker.runtime.amqp import Properties
from worker.runtime.topology import Topology, declare, legacy_queues, message_id_for

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    amqp.AmqpError,
    aio_pika.exceptions.AMQPError,
    ConnectionError,
    OSError,
    TimeoutError,
)


class BrokerUnavailable(Exception):
    """The broker did not confirm a publish (down, unreachable, refused or timed out)."""


class BrokerRefused(ConfigurationError):
    """The broker refused IW_AMQP_URL's credentials or vhost (403 ACCESS_REFUSED, 530 NOT_ALLOWED):
    final, not retried; the message never holds the password."""


def refused(exc: BaseException) -> BrokerRefused | None:
    """The refusal `exc` stands for, when it is one (the hot-path client's or aio-pika's)."""
    if isinstance(exc, BrokerRefused):
        return exc
    if isinstance(exc, amqp.AccessRefused):
        return BrokerRefused(
            f"the broker refused IW_AMQP_URL: {exc.code} {redact(exc.text)} (check the user, password and vhost)"
        )
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return BrokerRefused(
            f"the broker refused IW_AMQP_URL's credentials: {redact(str(exc.args[0] if exc.args else exc))}"
        )
    return None


def retry_broker(exc: BaseException) -> bool:
    """Whether a failure to reach the broker is worth waiting out (a refusal is not)."""
    return isinstance(exc, BROKER_ERRORS) and refused(exc) is None


class Unroutable(BrokerUnavailable):
    """The broker returned the message: no queue is bound for its routing key."""


class BrokerBlocked(BrokerUnavailable):
    """The broker blocks publishers (a memory or disk alarm): refused at once, not after a timeout."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, Any] | None = None
    expiration_ms: int | None = None


def _properties(message: Outgoing) -> Properties:
    return Properties(
        message_id=message_id_for(message.message_id) if message.message_id is not None else None,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        expiration=str(message.expiration_ms) if message.expiration_ms is not None else None,
        headers=dict(message.headers) if message.headers else None,
        timestamp=int(time.time()),
    )


def _failure(exc: BaseException) -> BrokerUnavailable:
    if isinstance(exc, amqp.Unroutable):
        return Unroutable(str(exc))
    if isinstance(exc, amqp.Blocked):
        return BrokerBlocked(str(exc))
    if isinstance(exc, BrokerUnavailable):
        return exc
    return BrokerUnavailable(f"publish failed: {type(exc).__name__}: {redact(str(exc))}")


class Broker:
    def __init__(self, url: str, topology: Topology, *, publish_timeout: float = 10.0) -> None:
        self._url = url
        self.topology = topology
        self.publish_timeout = publish_timeout
        self._management: AbstractRobustConnection | None = None
        self._connection: amqp.Connection | None = None
        self._channel: amqp.Channel | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closing = False
        self._log = get_logger(component="broker")

    @property
    def url(self) -> str:
        return self._url

    @property
    def connected(self) -> bool:
        return self._channel is not None and not self._channel.is_closed

    @property
    def blocked(self) -> str | None:
        """The broker's reason while it blocks our publishes (a memory or disk alarm)."""
        return self._connection.blocked if self._connection is not None else None

    # --- connecting ------------------------------------------------------------------------------------

    async def connect(self, *, declare_topology: bool = True) -> None:
        """Connect the publisher and the management connection, and declare the topology.
        BrokerRefused when the broker refuses the credentials or the vhost (final)."""
        self._closing = False
        try:
            await self._connect_publisher()  # first: the hot-path client says exactly why a login fails
            if self._management is None or self._management.is_closed:
                self._management = await aio_pika.connect_robust(
                    self._url, client_properties={"connection_name": f"integration-worker/{self.topology.prefix}"}
                )
            if declare_topology:
                channel = await self._management.channel()
                try:
                    await declare(channel, self.topology)
                finally:
                    await channel.close()
        except BROKER_ERRORS as exc:
            final = refused(exc)
            if final is not None:
                raise final from None
            raise

    async def connect_with_retry(self, *, declare_topology: bool = True) -> None:
        """Connect, waiting for the broker if it is not up yet (0.5 s doubling to 10 s); a refusal
        of the credentials or vhost is raised at once (BrokerRefused)."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(retry_broker),
            wait=wait_exponential_jitter(multiplier=0.5, max=10.0),
            before_sleep=self._log_retry("broker not reachable, retrying"),
        ):
            with attempt:
                await self.connect(declare_topology=declare_topology)

    def _log_retry(self, message: str) -> Any:
        def log(state: Any) -> None:
            error = state.outcome.exception() if state.outcome else None
            self._log.warning(message, error=redact(str(error)), retry_in=round(state.upcoming_sleep, 2))

        return log

    async def _connect_publisher(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            return
        connection = await amqp.Connection.open(self._url, name=f"integration-worker/{self.topology.prefix}/publish")
        connection.on_blocked = self._on_blocked
        channel = await connection.channel(confirms=True)
        self._connection, self._channel = connection, channel
        connection.closed.add_done_callback(self._on_publisher_lost)
        # A channel the broker closed (a message over its size limit, an exchange deleted) leaves
        # the connection open: drop the connection too, so the reconnect below replaces both.
        channel.on_broker_close = connection.abort

    def _on_blocked(self, reason: str | None) -> None:
        metrics.BROKER_BLOCKED.set(1 if reason else 0)
        if reason:
            self._log.warning("the broker blocks publishers; publishing fails at once until it stops", reason=reason)
        else:
            self._log.info("the broker takes publishes again")

    def _on_publisher_lost(self, _: asyncio.Future[None]) -> None:
        self._channel = None
        metrics.BROKER_BLOCKED.set(0)
        if self._closing or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        self._log.warning("publisher connection lost; reconnecting")
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(), name="iw-broker-reconnect")

    async def _reconnect(self) -> None:
        # Running already: even a refusal is retried (permissions can be mended while we wait).
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, BROKER_ERRORS)),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
            before_sleep=self._log_retry("publisher still away, retrying"),
        ):
            with attempt:
                if self._closing:
                    return
                await self._connect_publisher()
        self._log.info("publisher connected again")

    async def channel(self, *, prefetch: int | None = None, confirms: bool = True) -> AbstractChannel:
        """An aio-pika channel on the management connection (reply queues, parked messages)."""
        if self._management is None:
            raise BrokerUnavailable("not connected")
        channel = await self._management.channel(publisher_confirms=confirms, on_return_raises=confirms)
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def declare_type(self, type_: str) -> None:
        """Declare the topology again (a queue of `type_` was deleted under a consumer): the
        topology is the service's own, so a lost queue is recreated, not waited for."""
        if self._management is None or self._management.is_closed:
            raise BrokerUnavailable("not connected")
        channel = await self._management.channel()
        try:
            await declare(channel, self.topology)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        self._log.info("topology declared again", type=type_)

    async def legacy_queues(self, types: Sequence[str]) -> list[str]:
        """The unsharded queues of these types still holding messages (worker/runtime/topology.py)."""
        if self._management is None or self._management.is_closed:
            raise BrokerUnavailable("not connected")
        return await legacy_queues(self._management, self.topology, tuple(types))

    async def consumer_connection(self, name: str) -> amqp.Connection:
        """A connection of its own for a consumer (worker/runtime/consume.py)."""
        return await amqp.Connection.open(self._url, name=f"integration-worker/{self.topology.prefix}/{name}")

    # --- publishing ------------------------------------------------------------------------------------

    def _start(self, message: Outgoing) -> asyncio.Future[None]:
        channel, connection = self._channel, self._connection
        if channel is None or channel.is_closed or connection is None:
            raise BrokerUnavailable("not connected to the broker")
        if connection.blocked:
            raise BrokerBlocked(f"the broker blocks publishers: {connection.blocked}")
        try:
            return channel.publish(message.exchange, message.routing_key, message.body, _properties(message))
        except amqp.AmqpError as exc:
            raise _failure(exc) from exc

    async def _writable(self) -> None:
        """Until the socket to the broker drained (the broker reads slower than we write)."""
        connection = self._connection
        if connection is not None and not connection.is_writable:
            try:
                async with asyncio.timeout(self.publish_timeout):
                    await connection.writable()
            except TimeoutError:
                raise BrokerUnavailable("the broker stopped reading (its socket did not drain in time)") from None

    async def publish_message(self, message: Outgoing) -> None:
        """Publish (persistent, mandatory) and wait for the broker's confirm: `BrokerUnavailable`
        otherwise (`BrokerBlocked` at once under a broker alarm), `Unroutable` when no queue took it."""
        await self._writable()
        confirmed = self._start(message)
        try:
            await asyncio.wait_for(confirmed, self.publish_timeout)
        except (amqp.AmqpError, TimeoutError) as exc:
            raise _failure(exc) from None

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        expiration_ms: int | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        await self.publish_message(
            Outgoing(exchange, routing_key, body, message_id, correlation_id, reply_to, headers, expiration_ms)
        )

    async def publish_many(self, messages: Sequence[Outgoing]) -> list[BrokerUnavailable | None]:
        """Publish all (their frames in one write), then wait for every confirm; each message's
        outcome: None (confirmed) or why not."""
        try:
            await self._writable()
        except BrokerUnavailable as exc:
            return [exc] * len(messages)
        futures: list[asyncio.Future[None] | BrokerUnavailable] = []
        for message in messages:
            try:
                futures.append(self._start(message))
            except BrokerUnavailable as exc:
                futures.append(exc)
        pending = [f for f in futures if isinstance(f, asyncio.Future)]
        if pending:
            await asyncio.wait(pending, timeout=self.publish_timeout)
        outcomes: list[BrokerUnavailable | None] = []
        for future in futures:
            if isinstance(future, BrokerUnavailable):
                outcomes.append(future)
            elif not future.done():
                future.cancel()
                outcomes.append(BrokerUnavailable("no confirm from the broker in time"))
            elif future.cancelled():
                outcomes.append(BrokerUnavailable("cancelled"))
            else:
                error = future.exception()
                outcomes.append(_failure(error) if error is not None else None)
        return outcomes

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconnecting
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            await connection.close()
        management, self._management = self._management, None
        if management is not None:
            with contextlib.suppress(Exception):
                await management.close()
