"""The answer of each action call, kept by call id (the envelope id, i.e. the idempotency key).

    succeeded / refused   staged with the handler's writes: committed in the transaction that
                          puts the id in the inbox, so a stored answer means "ran once, this is it"
    failed                written when the call is parked; the id is not in the inbox, so a replay
                          or the same id again runs it (a later success replaces the failure)

The worker answers from here when a call's id comes again (a duplicate) and when a call is
parked; the HTTP and MCP gateways read it before publishing anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from schemas.envelope import Envelope
from schemas.tools import USER_HEADER, ReplyStatus, ToolReply
from worker.core.ids import derived_id
from worker.runtime.db import Queryable
from worker.sdk.registry import Registry
from worker.sdk.unit import OutboxItem, Staged, Write

_UPSERT = """
    INSERT INTO action_results (id, team_id, integration_id, type, action, status, body, input_hash, user_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
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
    user_id: str | None = None

    def belongs_to(self, team_id: str, user_id: str | None) -> bool:
        """Made by this team (and, when a user asks, by this user)."""
        return self.team_id == team_id and (user_id is None or self.user_id == user_id)

    def other_input(self, payload: dict[str, Any]) -> bool:
        return self.input_hash is not None and self.input_hash != input_hash(payload)


def reply_body(reply: ToolReply) -> dict[str, Any]:
    return reply.model_dump(mode="json", exclude_none=True)


def upsert(envelope: Envelope, team_id: str | None, integration_id: str | None, reply: ToolReply) -> Write:
    """The write storing a call's answer (succeeded or refused): committed with the inbox id."""
    return (
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
            envelope.headers.get(USER_HEADER),
        ),
    )


def failed(envelope: Envelope, reason: str) -> Write:
    """The write keeping a parked call's failure (only where no success is stored)."""
    reply = ToolReply(ok=False, status="failed", error=reason)
    return (
        _FAILED,
        (
            envelope.id,
            envelope.team_id,
            envelope.integration_id,
            envelope.type,
            envelope.name,
            reply.status,
            reply_body(reply),
            input_hash(envelope.payload),
            envelope.headers.get(USER_HEADER),
        ),
    )


def reply_item(
    envelope: Envelope | None, reply_to: str, correlation_id: str | None, reply: ToolReply, *, again: bool = False
) -> OutboxItem:
    """The answer to a waiting caller, as an outbox item. `again`: the answer to a copy of a call
    that already ran (its own id, so it is not mistaken for the first answer)."""
    if envelope is None:
        item_id = derived_id("reply", reply_to, str(correlation_id))
    elif again:
        item_id = derived_id(envelope.id, "reply-again", reply_to, str(correlation_id))
    else:
        item_id = derived_id(envelope.id, "reply")
    return OutboxItem(item_id, "", reply_to, orjson.dumps(reply_body(reply)), correlation_id)


async def get(conn: Queryable, call_id: str) -> StoredResult | None:
    record = await conn.fetchrow(
        """SELECT id, team_id, integration_id, type, action, status, body, created_at, input_hash, user_id
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
        user_id=record["user_id"],
    )


def is_action(registry: Registry, envelope: Envelope) -> bool:
    if envelope.kind != "command":
        return False
    integration = registry.get(envelope.type)
    return integration is not None and integration.action(envelope.name) is not None


def stage_refusal(
    staged: Staged,
    envelope: Envelope,
    *,
    reply_to: str | None,
    correlation_id: str | None,
    team_id: str | None,
    integration_id: str | None,
    reason: str,
) -> None:
    """A call the worker answers without running it (its integration is suspended, say)."""
    reply = ToolReply(ok=False, status="refused", error=reason)
    staged.writes.append(upsert(envelope, team_id, integration_id, reply))
    if reply_to:
        staged.outbox.append(reply_item(envelope, reply_to, correlation_id, reply))


def duplicate_reply(stored: StoredResult | None, envelope: Envelope) -> ToolReply:
    """The answer to a call id that came again: the first result, without running anything."""
    if stored is None:
        return ToolReply(ok=False, status="refused", error="this id was already processed; no answer is kept")
    if (envelope.team_id and stored.team_id != envelope.team_id) or (stored.type, stored.action) != (
        envelope.type,
        envelope.name,
    ):
        return ToolReply(ok=False, status="refused", error="this id belongs to another call")
    if stored.other_input(envelope.payload):
        return ToolReply(ok=False, status="refused", error="this idempotency key was used with other input")
    return stored.reply
