"""Request/reply over the broker, for callers inside this process (the HTTP and MCP gateways, the CLI).

A command goes out on the incoming exchange like any other, with `reply_to` naming this
process's reply queue and a fresh `correlation_id`; the worker that runs it answers there (through
its outbox, after the commit). The reply queue is exclusive to this process's connection and
named by us, so the robust connection declares it again, same name, after a reconnect.
An answer that comes after the caller stopped waiting is dropped: the caller asks for the
stored result by call id instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from worker.core.logging import get_logger
from worker.runtime.broker import Broker, Outgoing


class ReplyQueue:
    def __init__(self, broker: Broker, prefix: str) -> None:
        self._broker = broker
        self.name = f"{prefix}.replies.{uuid.uuid4().hex}"
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._starting = asyncio.Lock()
        self._log = get_logger(component="tool_rpc")

    async def _start(self) -> None:
        async with self._starting:
            if self._channel is not None and not self._channel.is_closed:
                return
            channel = await self._broker.channel(confirms=False)
            queue = await channel.declare_queue(self.name, exclusive=True, auto_delete=True)
            await queue.consume(self._on_reply, no_ack=True)
            self._channel, self._queue = channel, queue

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._waiting.get(message.correlation_id or "")
        if future is None or future.done():
            return  # nobody waits any more (timed out): the answer is stored by call id anyway
        try:
            body = orjson.loads(message.body)
        except orjson.JSONDecodeError:
            self._log.warning("reply is not JSON", correlation_id=message.correlation_id)
            return
        if isinstance(body, dict):
            future.set_result(body)

    async def request(self, outgoing: Outgoing, *, wait_seconds: float) -> dict[str, Any] | None:
        """Publish (confirmed) and wait for the answer; None when it did not come within `wait_seconds`.
        Raises BrokerUnavailable when the broker did not take the request."""
        await self._start()
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = future
        try:
            await self._broker.publish_message(
                dataclasses.replace(outgoing, reply_to=self.name, correlation_id=correlation_id)
            )
            return await asyncio.wait_for(future, wait_seconds)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(correlation_id, None)

    async def close(self) -> None:
        channel, self._channel, self._queue = self._channel, None, None
        if channel is not None and not channel.is_closed:
            await channel.close()
