"""Prometheus metrics, served at `/metrics` by the ingress and by a worker started alone."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

WEBHOOKS_RECEIVED = Counter(
    "iw_webhooks_received_total", "Webhook requests received by the ingress.", ["type", "status"]
)
PUBLISHED = Counter("iw_published_total", "Webhooks the ingress published (confirmed by the broker).", ["type"])
PROCESSED = Counter("iw_processed_total", "Messages the worker finished, by outcome.", ["type", "outcome"])
DUPLICATES = Counter("iw_duplicates_total", "Messages acknowledged without running: already processed.", ["type"])
RETRIED = Counter("iw_retried_total", "Messages sent to a retry queue.", ["type"])
PARKED = Counter("iw_parked_total", "Messages parked: they will not succeed without help.", ["type"])
EVENTS_PUBLISHED = Counter("iw_result_events_total", "Result events published.", ["event"])
HANDLER_SECONDS = Histogram(
    "iw_handler_duration_seconds",
    "Time a handler ran.",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
COMMIT_BATCH = Histogram(
    "iw_commit_batch_size",
    "Outcomes committed per transaction.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
IN_FLIGHT = Gauge("iw_in_flight", "Messages admitted (looked up, running or committing) and not yet settled.", ["type"])
WAITING = Gauge(
    "iw_read_ahead", "Messages read ahead and not admitted yet: behind their key, or waiting for a slot.", ["type"]
)
SHARDS_OWNED = Gauge("iw_shards_owned", "Shard queues of the type this worker consumes.", ["type"])
WORKERS_SEEN = Gauge("iw_workers", "Worker processes consuming the type, as this one sees them (itself too).", ["type"])
SHARD_HANDOVERS = Counter("iw_shard_handovers_total", "Shards this worker handed over to another.", ["type"])
LANE_SWITCHES = Counter(
    "iw_lane_switches_total",
    "Teams the ingress moved to a lane (bulk: over their rate; normal: back).",
    ["type", "lane"],
)
FENCE_TIMEOUTS = Counter(
    "iw_fence_timeouts_total",
    "Messages a worker ran after IW_FENCE_TIMEOUT without their lane switch's fence.",
    ["type"],
)
COMMIT_RETRIES = Counter(
    "iw_commit_retries_total",
    "Transactions tried again in place after a deadlock or a serialization failure (never a message retried).",
    ["reason"],
)
BROKER_BLOCKED = Gauge("iw_broker_blocked", "1 while the broker blocks this process's publishes (an alarm).")
INGRESS_SECONDS = Histogram(
    "iw_ingress_request_duration_seconds",
    "Webhook request time, publish confirm included.",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


_children: dict[tuple[str, ...], Any] = {}
_BY_OUTCOME = {"duplicate": DUPLICATES, "retried": RETRIED, "parked": PARKED}


def child(metric: Any, *labels: str) -> Any:
    """A metric's child for these labels, looked up once (`labels()` takes a lock every time)."""
    key = (metric._name, *labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def count(type_: str, outcome: str, messages: int = 1) -> None:
    """Messages of a type finished with `outcome`."""
    child(PROCESSED, type_, outcome).inc(messages)
    specific = _BY_OUTCOME.get(outcome)
    if specific is not None:
        child(specific, type_).inc(messages)


def observe_handler(type_: str, seconds: float) -> None:
    child(HANDLER_SECONDS, type_).observe(seconds)
