"""The message envelope (version 1): every message on the incoming exchange is one."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

ENVELOPE_VERSION: Literal[1] = 1

Kind = Literal["webhook", "command", "event"]
KINDS: tuple[Kind, ...] = ("webhook", "command", "event")

# Type strings keep the platform's spelling (`google-calendar`); names are
# provider event names or action names (`pull_request`, `send_email`).
TYPE_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$"
_TYPE_RE = re.compile(TYPE_PATTERN)
_NAME_RE = re.compile(NAME_PATTERN)


def _now() -> datetime:
    return datetime.now(UTC)


def routing_key(type_: str, kind: Kind, name: str) -> str:
    """`<type>.<kind>.<name>`, for example `github.webhook.pull_request`."""
    return f"{type_}.{kind}.{name}"


def valid_type(value: str) -> bool:
    return bool(_TYPE_RE.match(value))


def valid_name(value: str) -> bool:
    return bool(_NAME_RE.match(value))


# Ids are stored in PostgreSQL, which cannot hold U+0000: an id holding one is refused here.
NO_NUL = r"^[^\x00]*$"


class Envelope(BaseModel):
    """One unit of incoming work: a provider webhook, a command or a platform event.

    `id` is the deduplication key: the worker runs a given id's handler to
    success at most once. Webhook ids derive from the provider's delivery id
    (`github:<X-GitHub-Delivery>`), so provider retries collapse; publishers of
    commands choose their own (it doubles as the idempotency key).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(default=1, description="Envelope version.")
    id: str = Field(min_length=1, max_length=512, pattern=NO_NUL, description="Unique id; the deduplication key.")
    type: str = Field(pattern=TYPE_PATTERN, description="Integration type, e.g. `github`, `google-calendar`.")
    kind: Kind = Field(description="`webhook` (from a provider), `command` (do something), `event` (platform).")
    name: str = Field(pattern=NAME_PATTERN, description="Provider event or action name, e.g. `pull_request`.")
    integration_id: str | None = Field(default=None, pattern=NO_NUL, description="The integration row, when known.")
    team_id: str | None = Field(default=None, pattern=NO_NUL, description="The platform team, when known.")
    external_team_id: str | None = Field(
        default=None,
        pattern=NO_NUL,
        description="The provider-side account that owns the integration (GitHub installation id, "
        "Slack team id); used to find the integration when `integration_id` is absent.",
    )
    created_at: datetime = Field(default_factory=_now, description="When the work was accepted.")
    attempt: int = Field(default=0, ge=0, description="Failed attempts so far (0 on first delivery).")
    trace_id: str = Field(default_factory=lambda: uuid.uuid4().hex, description="Carried into logs and events.")
    headers: dict[str, str] = Field(default_factory=dict, description="Provider headers that matter.")
    payload: dict[str, Any] = Field(default_factory=dict, description="The body: provider JSON or command input.")

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @property
    def routing_key(self) -> str:
        return routing_key(self.type, self.kind, self.name)

    def next_attempt(self) -> Envelope:
        return self.model_copy(update={"attempt": self.attempt + 1})


class InvalidEnvelope(ValueError):
    pass


# --- ordering keys ----------------------------------------------------------------------------------

KEY_HEADER = "iw-key"
"""The AMQP header holding a message's ordering key. A type's messages are spread over its shard
queues by this header (RabbitMQ's consistent-hash exchange); messages with one key land on one
shard and run one after another, in the order the broker took them. A message without it is
ordered with every other keyless message of its type (one shard)."""

KEY_MAX = 512


def tenant_of(type_: str, integration_id: str | None, external_team_id: str | None, team_id: str | None) -> str:
    """Whose message this is, as the fairness between teams counts it: the integration, else the
    provider account, else the team (the first part of every key)."""
    if integration_id:
        return f"i:{integration_id}"
    if external_team_id:
        return f"x:{type_}:{external_team_id}"
    if team_id:
        return f"t:{team_id}"
    return f"-:{type_}"


def message_key(tenant: str, detail: str | None) -> str:
    """`<tenant>` (one order for all of the tenant's messages of a kind) or `<tenant>|<detail>`
    (one order per thing: a pull request, a thread, a task). At most KEY_MAX characters."""
    key = tenant if not detail else f"{tenant}|{detail}"
    if len(key) > KEY_MAX:
        key = f"{tenant[:256]}|sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def tenant_of_key(key: str) -> str:
    return key.partition("|")[0]


def dumps_envelope(envelope: Envelope) -> bytes:
    """An envelope as the bytes of a broker message."""
    return orjson.dumps(envelope.model_dump(mode="json"))


def encode_webhook(
    *,
    id: str,
    type_: str,
    name: str,
    payload: dict[str, Any],
    headers: dict[str, str],
    integration_id: str | None = None,
    team_id: str | None = None,
    external_team_id: str | None = None,
) -> bytes:
    """A webhook envelope as JSON bytes, equal to `Envelope(...).model_dump_json()` but without
    building a model (the ingress does this for every request). Checks what a provider controls."""
    if not 0 < len(id) <= 512:
        raise InvalidEnvelope("id: must be 1 to 512 characters")
    if not _NAME_RE.match(name):
        raise InvalidEnvelope(f"name: {name[:64]!r} is not a valid event name")
    if not _TYPE_RE.match(type_):
        raise InvalidEnvelope(f"type: {type_[:64]!r} is not a valid type")
    return orjson.dumps(
        {
            "v": 1,
            "id": id,
            "type": type_,
            "kind": "webhook",
            "name": name,
            "integration_id": integration_id,
            "team_id": team_id,
            "external_team_id": external_team_id,
            "created_at": datetime.now(UTC),
            "attempt": 0,
            "trace_id": os.urandom(16).hex(),
            "headers": headers,
            "payload": payload,
        }
    )
