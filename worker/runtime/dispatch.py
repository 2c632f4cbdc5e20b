"""Dispatching a batch: decode and validate each delivery, set aside the ids already processed,
find the batch's integrations in one query, and decide for each message what runs it.

    not an envelope, or on the wrong queue     parked as it is (poison)
    its id already in the inbox                a duplicate: acknowledged, nothing runs
    no handler for it                          ignored (a command nobody handles: parked)
    no integration where one is needed         parked: it names an integration that is not there
    its integration inactive                   skipped and logged (an action's caller is answered)
    otherwise                                  run: a handler, or an action
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.rows import IntegrationRow
from worker.runtime import amqp, store
from worker.runtime.db import Queryable
from worker.runtime.records import Records
from worker.sdk.declare import Handler
from worker.sdk.errors import Failure, PermanentError, validation_summary
from worker.sdk.records import IntegrationRecord
from worker.sdk.registry import Registry, Route
from worker.sdk.unit import Staged

Outcome = Literal["success", "duplicate", "ignored", "skipped_inactive", "retried", "parked", "returned"]


@dataclass(slots=True, eq=False)
class Message:
    """One delivery on its way through the worker."""

    delivery: amqp.Delivery
    queue_type: str
    received: float
    queue: str = ""  # the shard queue it came from
    shard: str = ""  # `<type>/<index>`: the shard, whichever lane (its key's order is kept across both)
    key: str = ""  # its ordering key (`iw-key`): its events run one after the other
    tenant: str = ""  # whose it is, for the fairness between teams
    envelope: Envelope | None = None
    record: IntegrationRecord | None = None
    route: Route | None = None
    staged: Staged = field(default_factory=Staged)
    failure: Failure | None = None
    bug: str | None = None  # the traceback of a handler's bug
    outcome: Outcome | None = None
    handler_seconds: float = 0.0
    poison: bool = False
    settled: bool = False  # acknowledged or sent back: never again

    @property
    def id(self) -> str | None:
        return self.envelope.id if self.envelope is not None else self.delivery.message_id

    @property
    def team_id(self) -> str | None:
        if self.record is not None:
            return self.record.team_id
        return self.envelope.team_id if self.envelope is not None else None


def decode(message: Message) -> bool:
    """Read the envelope (once); False (and the message marked poison) when it cannot be handled."""
    if message.envelope is not None:
        return True
    if message.poison:
        return False
    try:
        envelope = Envelope.model_validate_json(message.delivery.body)
    except ValidationError as exc:
        message.poison = True
        message.failure = Failure("permanent", f"not a valid envelope: {validation_summary(exc)}")
        return False
    if envelope.type != message.queue_type:
        message.poison = True
        message.failure = Failure("permanent", f"type {envelope.type!r} on the wrong queue")
        return False
    message.envelope = envelope
    return True


@dataclass(frozen=True, slots=True)
class Found:
    """What the database says of a batch: the ids it processed, and its integrations."""

    processed: set[str]
    by_id: dict[str, IntegrationRow]
    by_external: dict[tuple[str, str], IntegrationRow]
    by_team: dict[tuple[str, str], list[IntegrationRow]]
    records: dict[str, IntegrationRecord | PermanentError] = field(default_factory=dict)

    def record(self, row: IntegrationRow, records: Records) -> IntegrationRecord:
        """The row's record, read once for the batch (it names the same integration many times)."""
        found = self.records.get(row.id)
        if found is None:
            try:
                found = records.of(row)
            except PermanentError as exc:
                found = exc
            self.records[row.id] = found
        if isinstance(found, PermanentError):
            raise found
        return found


async def look_up(conn: Queryable, envelopes: Sequence[Envelope]) -> Found:
    """The inbox check and the integrations of the whole batch: one statement."""
    processed, rows = await store.batch_look_up(
        conn,
        [e.id for e in envelopes],
        [e.integration_id for e in envelopes if e.integration_id],
        [(e.type, e.external_team_id) for e in envelopes if not e.integration_id and e.external_team_id],
        [(e.type, e.team_id) for e in envelopes if not e.integration_id and not e.external_team_id and e.team_id],
    )
    by_team: dict[tuple[str, str], list[IntegrationRow]] = {}
    for row in rows:
        by_team.setdefault((row.type, row.team_id), []).append(row)
    return Found(
        processed,
        {r.id: r for r in rows},
        {(r.type, r.external_team_id): r for r in rows if r.external_team_id},
        by_team,
    )


def route(message: Message, found: Found, registry: Registry, records: Records) -> Outcome | None:
    """Decide what runs `message`: None when it runs (message.route and .record are set), else
    the outcome it has without running; a failure is left on `message.failure`."""
    envelope = message.envelope
    assert envelope is not None
    if envelope.id in found.processed:
        return "duplicate"
    route_ = registry.route(envelope.type, envelope.kind, envelope.name)
    if route_ is None:
        if envelope.kind == "command":
            message.failure = Failure("permanent", f"{envelope.type} has no command {envelope.name!r}")
            return "parked"
        return "ignored"
    row: IntegrationRow | None = None
    if envelope.integration_id:
        row = found.by_id.get(envelope.integration_id)
    elif envelope.external_team_id:
        row = found.by_external.get((envelope.type, envelope.external_team_id))
    elif envelope.team_id:
        candidates = found.by_team.get((envelope.type, envelope.team_id), [])
        if len(candidates) > 1:
            message.failure = Failure(
                "permanent",
                f"team {envelope.team_id} has {len(candidates)} {envelope.type} integrations; "
                "say which with integration_id",
            )
            return "parked"
        row = candidates[0] if candidates else None
    if row is not None:
        try:
            message.record = found.record(row, records)
        except PermanentError as exc:
            message.failure = Failure("permanent", str(exc))
            return "parked"
        if envelope.team_id and row.team_id != envelope.team_id:
            message.failure = Failure("permanent", f"integration {row.id} does not belong to team {envelope.team_id}")
            return "parked"
    required = route_.requires_integration
    if message.record is None and required:
        message.failure = Failure("permanent", f"unknown integration for {describe(envelope)}")
        return "parked"
    message.route = route_
    when_inactive = isinstance(route_, Handler) and route_.when_inactive
    if message.record is not None and not message.record.is_active and not when_inactive:
        return "skipped_inactive"
    return None


def describe(envelope: Envelope) -> str:
    if envelope.integration_id:
        return f"integration_id={envelope.integration_id}"
    if envelope.external_team_id:
        return f"{envelope.type} external_team_id={envelope.external_team_id}"
    if envelope.team_id:
        return f"{envelope.type} team_id={envelope.team_id}"
    return f"{envelope.routing_key} (no integration_id, external_team_id or team_id)"
