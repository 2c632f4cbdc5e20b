"""Ordering keys: what the events of a message kind are ordered by.

Each handler and action says it, next to its function (`Handler(..., key=...)`):

    key=payload_key("repository.id", "pull_request.number")   one order per pull request
    key=payload_key("event.channel", "event.thread_ts")       one order per thread
    key=per_integration                                       one order for the integration's
                                                              messages of this kind
    key=unordered                                             no order: each message on its own
    key=lambda message: ...                                   anything computed from the message

The runtime computes the key when a message is published (the ingress, `ctx.publish`, the tool
gateways, the CLI) and carries it in the `iw-key` header. A type's messages are spread over its
shard queues by key, so the events of one key reach one worker, which runs them one after the
other in the order the broker took them; different keys run side by side. The key always starts
with the message's tenant (its integration, provider account or team), which is also what the
worker's fairness between teams counts.

A key function gets the message as it is published (never a database): it must be quick, and a
key it cannot compute (a payload without the field) falls back to `per_integration`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas.envelope import message_key, tenant_of


class MessageView(Protocol):
    """What a key function reads of a message: an `Envelope`, or the ingress's view of a webhook."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def integration_id(self) -> str | None: ...
    @property
    def team_id(self) -> str | None: ...
    @property
    def external_team_id(self) -> str | None: ...
    @property
    def payload(self) -> Mapping[str, Any]: ...


KeyFn = Callable[[MessageView], "str | None"]


@dataclass(frozen=True, slots=True)
class Published:
    """A message about to be published, for its key (the ingress builds no `Envelope`)."""

    id: str
    type: str
    kind: str
    name: str
    payload: Mapping[str, Any]
    integration_id: str | None = None
    team_id: str | None = None
    external_team_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def per_integration(message: MessageView) -> str | None:
    """One order for every message of this kind of the integration (of the tenant)."""
    return None


def unordered(message: MessageView) -> str:
    """No order: every message is its own key (independent requests, such as most actions)."""
    return f"id:{message.id}"


def payload_key(*paths: str) -> KeyFn:
    """The values at these dotted paths of the payload, joined: `payload_key("a.b", "c")`. A path
    that is missing (or not a plain value) makes the key fall back to `per_integration`, unless it
    ends with `?` (optional: `payload_key("channel", "thread_ts?")`, empty when missing)."""
    split = [(tuple(path.rstrip("?").split(".")), path.endswith("?")) for path in paths]

    def key(message: MessageView) -> str | None:
        parts = []
        for path, optional in split:
            value: Any = message.payload
            for step in path:
                value = value.get(step) if isinstance(value, Mapping) else None
            if value is None or isinstance(value, Mapping | list):
                if not optional:
                    return None
                value = ""
            parts.append(str(value))
        return ":".join(parts)

    key.__doc__ = "payload " + ", ".join(f"`{path}`" for path in paths)
    return key


def describe(fn: KeyFn) -> str:
    """What a key function orders by, in a few words (docs/contract.md's table)."""
    if fn is per_integration:
        return "the integration (one order)"
    if fn is unordered:
        return "none: each message on its own"
    doc = (fn.__doc__ or "").strip().splitlines()
    if not doc:
        return "computed from the payload"
    return doc[0][:1].lower() + doc[0][1:].rstrip(".")


def key_of(message: MessageView, fn: KeyFn | None) -> str:
    """The message's ordering key: its tenant, and what `fn` says of it (a failing `fn` counts as
    saying nothing: the tenant's one order)."""
    detail: str | None = None
    if fn is not None:
        try:
            detail = fn(message)
        except Exception:  # a payload the function did not expect: ordered with the tenant's messages
            detail = None
    tenant = tenant_of(message.type, message.integration_id, message.external_team_id, message.team_id)
    return message_key(tenant, detail)
