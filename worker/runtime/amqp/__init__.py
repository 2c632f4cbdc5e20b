"""A lean AMQP 0-9-1 client for the worker's two hot paths: consuming deliveries (with one
multiple-ack for many) and publishing with confirms (the frames of one event-loop turn in one
write). Everything else (declaring the topology, parked-message tools, reply queues) goes
through aio-pika. Figures and the frame codec: frames.py. pamqp (declared in pyproject.toml) is imported
here and nowhere else; an import-linter contract keeps it so.

A connection does not reconnect by itself: when it is lost every pending publish fails with
`ConnectionLost`, consumers are told through `closed`, and the owner (the publisher, the
intake) connects again under its tenacity policy. Deliveries of a lost connection are never
acknowledged; the broker redelivers them and the inbox turns repeats into duplicates.
"""

from worker.runtime.amqp.channel import Channel, Delivery, OnDelivery
from worker.runtime.amqp.connection import Connection
from worker.runtime.amqp.frames import Properties
from worker.runtime.amqp.types import (
    AccessRefused,
    AmqpError,
    Blocked,
    ChannelClosed,
    ClosedByBroker,
    ConnectionLost,
    Nacked,
    Unroutable,
)

__all__ = [
    "AccessRefused",
    "AmqpError",
    "Blocked",
    "Channel",
    "ChannelClosed",
    "ClosedByBroker",
    "Connection",
    "ConnectionLost",
    "Delivery",
    "Nacked",
    "OnDelivery",
    "Properties",
    "Unroutable",
]
