"""Parked messages: list, show, replay, purge (`integration-worker dead ...`).

Parked messages live on the durable `<prefix>.parked` queue with their
envelope and headers saying why (`x-error`, `x-error-kind`, `x-attempts`,
`x-parked-at`). Reading fetches them without acknowledging and gives them
back when done, so inspection never loses one. What `list` and `show` display hides the
secret fields of an install or update command's config (the message keeps them, for replay).
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pydantic import BaseModel, SecretStr

from schemas.envelope import KEY_HEADER, Envelope, dumps_envelope
from schemas.rows import ParkedMessage
from worker.runtime.broker import Broker
from worker.sdk.registry import Registry


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


def describe(message: AbstractIncomingMessage) -> ParkedMessage:
    headers = message.headers or {}
    envelope: dict[str, Any] | None
    raw: str | None = None
    try:
        envelope = orjson.loads(message.body)
        if not isinstance(envelope, dict):
            raise ValueError
    except ValueError:
        envelope, raw = None, message.body[:2000].decode(errors="replace")
    error = _text(headers.get("x-error"))
    kind = _text(headers.get("x-error-kind"))
    parked_at = _text(headers.get("x-parked-at")) or None
    if not error:  # dead-lettered by the broker itself: unroutable, or over the delivery limit
        deaths = headers.get("x-death")
        death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
        reason = _text(death.get("reason"))
        died = death.get("time")  # when the broker dead-lettered it (none for an unroutable message)
        if parked_at is None and isinstance(died, datetime):
            parked_at = died.isoformat()
        error = {
            "delivery_limit": "delivered too many times without an acknowledgement (a crash loop)",
        }.get(reason, reason or "no queue was bound for its routing key (unroutable)")
        kind = "broker"
    attempts_header = headers.get("x-attempts")
    attempts = int(attempts_header) if isinstance(attempts_header, int | str) and str(attempts_header).isdigit() else 0
    return ParkedMessage(
        id=str(envelope.get("id")) if envelope and envelope.get("id") else (_text(message.message_id) or "?"),
        routing_key=_text(headers.get("x-routing-key")) or (message.routing_key or ""),
        type=_text(headers.get("x-type")) or (str(envelope.get("type")) if envelope else None),
        error=error,
        error_kind=kind,
        attempts=attempts,
        parked_at=parked_at,
        envelope=envelope,
        raw=raw,
    )


@contextlib.asynccontextmanager
async def _parked_queue(broker: Broker) -> AsyncIterator[AbstractQueue]:
    channel = await broker.channel(confirms=False)
    try:
        yield await channel.get_queue(broker.topology.parked, ensure=False)
    finally:
        await channel.close()  # everything fetched and not acknowledged goes back on the queue


async def _fetch_all(queue: AbstractQueue, limit: int | None) -> list[AbstractIncomingMessage]:
    messages: list[AbstractIncomingMessage] = []
    while limit is None or len(messages) < limit:
        message = await queue.get(no_ack=False, fail=False, timeout=5)
        if message is None:
            break
        messages.append(message)
    return messages


HIDDEN = "[hidden]"
_CONFIG_COMMANDS = ("integration.command.install", "integration.command.update")


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def _secret_keys(model: type[BaseModel]) -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        if _is_secret(field.annotation):
            keys.add(name)
            if field.alias:
                keys.add(field.alias)
    return keys


def without_secrets(parked: ParkedMessage, registry: Registry) -> ParkedMessage:
    """A parked message fit for display: an install or update command carries a config whose
    secret fields (any type's: an update does not name its type) are hidden."""
    envelope = parked.envelope
    if envelope is None or parked.routing_key not in _CONFIG_COMMANDS:
        return parked
    payload = envelope.get("payload")
    config = payload.get("config") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or not isinstance(config, dict):
        return parked
    secret = set().union(*(_secret_keys(integration.config) for integration in registry))
    hidden = {key: HIDDEN if key in secret and value else value for key, value in config.items()}
    return parked.model_copy(update={"envelope": {**envelope, "payload": {**payload, "config": hidden}}})


async def list_parked(
    broker: Broker, limit: int | None = None, registry: Registry | None = None
) -> list[ParkedMessage]:
    """Parked messages, oldest first; with the registry, secrets hidden for display."""
    async with _parked_queue(broker) as queue:
        parked = [describe(m) for m in await _fetch_all(queue, limit)]
    return [without_secrets(p, registry) for p in parked] if registry is not None else parked


async def show(broker: Broker, message_id: str, registry: Registry | None = None) -> ParkedMessage | None:
    async with _parked_queue(broker) as queue:
        for message in await _fetch_all(queue, None):
            parked = describe(message)
            if parked.id == message_id:
                return without_secrets(parked, registry) if registry is not None else parked
    return None


async def replay(broker: Broker, message_id: str | None, registry: Registry) -> tuple[int, list[str]]:
    """Republish parked messages (one id, or all with None) with attempts reset, on their key's
    shard (the key they were parked with, else the one their handler declares).
    Returns how many were replayed and the ids that could not be (not envelopes)."""
    replayed = 0
    skipped: list[str] = []
    async with _parked_queue(broker) as queue:
        for message in await _fetch_all(queue, None):
            parked = describe(message)
            if message_id is not None and parked.id != message_id:
                continue
            if parked.envelope is None:
                skipped.append(parked.id)
                continue
            try:
                envelope = Envelope.model_validate(parked.envelope).model_copy(update={"attempt": 0})
            except ValueError:
                skipped.append(parked.id)
                continue
            key = (message.headers or {}).get(KEY_HEADER)
            await broker.publish(
                broker.topology.shard_exchange(envelope.type)
                if envelope.type in broker.topology.types
                else broker.topology.incoming,
                envelope.routing_key,
                dumps_envelope(envelope),
                message_id=envelope.id,
                headers={KEY_HEADER: key if isinstance(key, str) and key else registry.key_of(envelope)},
            )
            await message.ack()
            replayed += 1
    return replayed, skipped


async def purge(broker: Broker) -> int:
    async with _parked_queue(broker) as queue:
        result = await queue.purge()
        return int(getattr(result, "message_count", 0) or 0)
