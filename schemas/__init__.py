"""The public contract of the integration worker.

Other services code against these models: the envelope that carries work in,
the result events that carry results out, and the database rows. Every model
exports JSON Schema (`integration-worker schema`).
"""

from schemas.envelope import ENVELOPE_VERSION, Envelope, Kind, routing_key
from schemas.events import EVENT_TYPES, EventData, ResultEvent

__all__ = [
    "ENVELOPE_VERSION",
    "EVENT_TYPES",
    "Envelope",
    "EventData",
    "Kind",
    "ResultEvent",
    "routing_key",
]
