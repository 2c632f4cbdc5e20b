"""The client's errors, and what a channel needs of its connection."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from pamqp.base import Frame


class AmqpError(Exception):
    pass


class ConnectionLost(AmqpError):
    pass


class ClosedByBroker(ConnectionLost):
    """The broker closed the connection, with its reply code (320 CONNECTION_FORCED: a node
    stopping; 501/505: a frame it could not read; 541 INTERNAL_ERROR)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"the broker closed the connection: {code} {text}")
        self.code = code
        self.text = text


class AccessRefused(ClosedByBroker):
    """403 ACCESS_REFUSED (wrong user or password, no permission on the vhost) or 530 NOT_ALLOWED
    (no such vhost): trying again cannot help, the settings must change."""


# Reply codes after which a connection is not worth opening again with the same settings.
REFUSED_CODES = frozenset({403, 530})


def closed_by_broker(code: int, text: str) -> ClosedByBroker:
    return (AccessRefused if code in REFUSED_CODES else ClosedByBroker)(code, text)


class ChannelClosed(AmqpError):
    """The channel is closed; `code` is the broker's reply code when the broker closed it (404
    NOT_FOUND: a queue that does not exist; 406 PRECONDITION_FAILED; 403 ACCESS_REFUSED)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Unroutable(AmqpError):
    """The broker returned a mandatory message: no queue is bound for its routing key."""


class Blocked(AmqpError):
    """The broker blocks this connection's publishes (a memory or disk alarm)."""


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

    def write_later(self, data: bytes) -> None: ...

    def send(self, channel: int, frame: Frame) -> None: ...
