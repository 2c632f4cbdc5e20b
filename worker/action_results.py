"""The answer of each action call, kept by call id (the envelope id, i.e. the idempotency key).

    succeeded / refused   staged with the handler's writes: committed in the transaction that
                          puts the id in the inbox, so a stored answer means "ran once, this is it"
    failed                written when the call is parked; the id is not in the inbox, so a replay
                          or the same id again runs it (a later success replaces the failure)

The consumer answers from here when a call's id comes again (a duplicate) and when a call is
parked; the HTTP and MCP gateways read it before publishing anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from schemas.envelope import Envelope
from schemas.tools import ReplyStatus, ToolReply
from worker.context import OutboxItem, Staged, derived_id
from worker.db import Queryable
from worker.logging import get_logger
from worker.redact import redact

if TYPE_CHECKING:
    from worker.integration import Registry
    from worker.runtime import Runtime


class ReplyAddress(Protocol):
    """Where a waiting caller wants its answer: a delivery's reply-to queue and correlation id."""

    @property
    def reply_to(self) -> str | None: ...

    @property
    def correlation_id(self) -> str | None: ...


_UPSERT = """
    INSERT INTO action_results (id, team_id, integration_id, type, action, status, body, input_hash)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, body = EXCLUDED.body,
        integration_id = EXCLUDED.integration_id, input_hash = EXCLUDED.input_hash, updated_at = now()"""
_FAILED = _UPSERT + " WHERE action_results.status = 'failed'"


def input_hash(payload: dict[str, Any]) -> str:
    """What identifies a call's input: the same idempotency key with another input is a mistake."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class StoredResult:
    id: str
    team_id: str | None
    integration_id: str | None
    type: str
    action: str
    status: ReplyStatus
    reply: ToolReply
    created_at: datetime
    input_hash: str | None = None

    def other_input(self, payload: dict[str, Any]) -> bool:
        return self.input_hash is not None and self.input_hash != input_hash(payload)


def reply_body(reply: ToolReply) -> dict[str, Any]:
    return reply.model_dump(mode="json", exclude_none=True)


def stage(
    staged: Staged, envelope: Envelope, team_id: str | None, integration_id: str | None, reply: ToolReply
) -> None:
    """Stage the answer of a call that ran (succeeded) or was refused: written with the inbox id."""
    staged.writes.append(
        (
            _UPSERT,
            (
                envelope.id,
                team_id,
                integration_id,
                envelope.type,
                envelope.name,
                reply.status,
                reply_body(reply),
                input_hash(envelope.payload),
            ),
        )
    )


def reply_item(envelope: Envelope, reply_to: str, correlation_id: str | None, reply: ToolReply) -> OutboxItem:
    return OutboxItem(derived_id(envelope.id, "reply"), "", reply_to, orjson.dumps(reply_body(reply)), correlation_id)


async def get(conn: Queryable, call_id: str) -> StoredResult | None:
    record = await conn.fetchrow(
        """SELECT id, team_id, integration_id, type, action, status, body, created_at, input_hash
           FROM action_results WHERE id = $1""",
        call_id,
    )
    if record is None:
        return None
    return StoredResult(
        id=record["id"],
        team_id=record["team_id"],
        integration_id=record["integration_id"],
        type=record["type"],
        action=record["action"],
        status=record["status"],
        reply=ToolReply.model_validate(record["body"]),
        created_at=record["created_at"],
        input_hash=record["input_hash"],
    )


def is_action(registry: Registry, envelope: Envelope) -> bool:
    if envelope.kind != "command":
        return False
    integration = registry.get(envelope.type)
    return integration is not None and integration.action(envelope.name) is not None


# --- what the consumer calls ------------------------------------------------------------------------


def stage_refusal(
    registry: Registry,
    *,
    staged: Staged,
    envelope: Envelope,
    message: ReplyAddress,
    team_id: str | None,
    integration_id: str | None,
    reason: str,
) -> None:
    """A call the worker answers without running it (its integration is suspended, say)."""
    if not is_action(registry, envelope):
        return
    reply = ToolReply(ok=False, status="refused", error=reason)
    stage(staged, envelope, team_id, integration_id, reply)
    if message.reply_to:
        staged.outbox.append(reply_item(envelope, message.reply_to, message.correlation_id, reply))


async def answer_parked(runtime: Runtime, message: ReplyAddress, envelope: Envelope | None, reason: str) -> None:
    """A parked call: keep its failure for whoever asks later, and answer the caller if it waits."""
    reply = ToolReply(ok=False, status="failed", error=reason)
    try:
        if envelope is not None and is_action(runtime.registry, envelope):
            await runtime.pool.execute(
                _FAILED,
                envelope.id,
                envelope.team_id,
                envelope.integration_id,
                envelope.type,
                envelope.name,
                reply.status,
                reply_body(reply),
                input_hash(envelope.payload),
            )
        if message.reply_to:
            await runtime.broker.publish(
                "", message.reply_to, orjson.dumps(reply_body(reply)), correlation_id=message.correlation_id
            )
    except Exception as exc:  # best effort: the message is parked either way
        get_logger(component="action_results").warning("parked call not answered", error=redact(str(exc)))


async def answer_duplicate(runtime: Runtime, message: ReplyAddress, envelope: Envelope) -> None:
    """The same call id again: answer with the first result, without running anything."""
    if not message.reply_to:
        return
    try:
        stored = await get(runtime.pool, envelope.id)
        if stored is None:
            reply = ToolReply(ok=False, status="refused", error="this id was already processed; no answer is kept")
        elif (envelope.team_id and stored.team_id != envelope.team_id) or (
            stored.type,
            stored.action,
        ) != (envelope.type, envelope.name):
            reply = ToolReply(ok=False, status="refused", error="this id belongs to another call")
        elif stored.other_input(envelope.payload):
            reply = ToolReply(ok=False, status="refused", error="this idempotency key was used with other input")
        else:
            reply = stored.reply
        await runtime.broker.publish(
            "", message.reply_to, orjson.dumps(reply_body(reply)), correlation_id=message.correlation_id
        )
    except Exception as exc:  # best effort: the caller can ask for the result by id
        get_logger(component="action_results").warning("duplicate call not answered", error=redact(str(exc)))
