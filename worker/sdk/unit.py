"""The unit of work: what one message's run (or an install, an OAuth callback, a scheduled job)
stages, to be committed in one transaction with the message's inbox id. Nothing staged here
happens unless it all does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.rows import LogLevel

Write = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A message published once the unit commits: a result event, a command for later work, or
    the answer to a waiting caller (exchange "" and the caller's queue as routing key).

    `render`, when given, makes the body at commit time instead of `body`: an event emitted
    `once` is serialised only if it is the one that will be published (of ten handlers of one
    batch emitting the same key, one is)."""

    id: str
    exchange: str
    routing_key: str
    body: bytes
    correlation_id: str | None = None
    once_key: str | None = None  # published only if no item with this key ever was
    render: Callable[[], bytes] | None = None
    headers: dict[str, str] | None = None  # AMQP headers (a command's ordering key, `iw-key`)

    def rendered(self) -> OutboxItem:
        if self.render is None:
            return self
        return OutboxItem(
            self.id,
            self.exchange,
            self.routing_key,
            self.render(),
            self.correlation_id,
            self.once_key,
            headers=self.headers,
        )


@dataclass(frozen=True, slots=True)
class LogEntry:
    """An `integration_logs` row."""

    integration_id: str
    team_id: str | None
    level: LogLevel
    key: str
    message: str
    event_id: str | None
    details: dict[str, Any] | None = None
    user_link_id: str | None = None
    duration_ms: int | None = None


@dataclass(slots=True)
class Staged:
    writes: list[Write] = field(default_factory=list)
    outbox: list[OutboxItem] = field(default_factory=list)
    logs: list[LogEntry] = field(default_factory=list)

    def clear(self) -> None:
        self.writes.clear()
        self.outbox.clear()
        self.logs.clear()

    @property
    def empty(self) -> bool:
        return not (self.writes or self.outbox or self.logs)
