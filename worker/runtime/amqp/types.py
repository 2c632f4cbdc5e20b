"""The client's errors, and what a channel needs of its connection."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from pamqp.base import Frame


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


class Link(Protocol):
    """The side of a connection its channels use (kept apart so a channel never imports the
    connection that creates it)."""

    name: str
    loop: asyncio.AbstractEventLoop
    frame_max: int
    channels: dict[int, Any]

    @property
    def is_closed(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def send(self, channel: int, frame: Frame) -> None: ...
