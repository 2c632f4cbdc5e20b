"""What docs/operations.md says an operator sees: every Prometheus metric it lists moves when the
thing it counts happens, and the JSON log lines carry the fields it names."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import orjson
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Results, eventually, pull_request_payload, signed_github
from tests.helpers import publish, spawn_worker
from tests.support.probe import GATE
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

TEAM = "team-observed"
PROBE = "tests.support.probe:PROBE_REGISTRY"


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[Worker]:
    worker = Worker(runtime)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Samples:
    """Values of samples now, to compare with later ones."""

    def __init__(self, *keys: tuple[str, dict[str, str]]) -> None:
        self.keys = keys
        self.before = [sample(name, **labels) for name, labels in keys]

    def moved(self) -> dict[str, float]:
        """How much each sample moved since: `name{label=value,...}` -> the difference."""
        return {
            _key(name, labels): sample(name, **labels) - before
            for (name, labels), before in zip(self.keys, self.before, strict=True)
        }


def _key(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


def scrape(text: str) -> dict[str, float]:
    """A `/metrics` page as `name{label=value,...}` -> value."""
    return {
        _key(s.name, dict(s.labels)): s.value for family in text_string_to_metric_families(text) for s in family.samples
    }


# --- the ingress's metrics, as scraped from its /metrics ---------------------------------------------------


async def test_the_ingress_counts_webhooks_answers_publishes_and_time(ingress: httpx.AsyncClient) -> None:
    before = scrape((await ingress.get("/metrics")).text)

    body, headers = signed_github("pull_request", pull_request_payload())
    assert (await ingress.post("/webhooks/github", content=body, headers=headers)).status_code == 202
    body, headers = signed_github("pull_request", pull_request_payload(), secret="not-the-secret")
    assert (await ingress.post("/webhooks/github", content=body, headers=headers)).status_code == 401
    assert (await ingress.post("/webhooks/jira", content=b"{}")).status_code == 404

    after = scrape((await ingress.get("/metrics")).text)

    def moved(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("iw_webhooks_received_total{status=202,type=github}") == 1
    assert moved("iw_webhooks_received_total{status=401,type=github}") == 1
    assert moved("iw_webhooks_received_total{status=404,type=unknown}") == 1
    assert moved("iw_published_total{type=github}") == 1  # only the one the broker confirmed
    assert moved("iw_ingress_request_duration_seconds_count{type=github}") == 2  # both answers, timed
    assert moved("iw_ingress_request_duration_seconds_sum{type=github}") > 0


# --- the worker's metrics ------------------------------------------------------------------------------------


async def test_the_worker_counts_each_outcome_and_times_handlers(probe_runtime: Runtime, results: Results) -> None:
    outcomes = ("success", "duplicate", "retried", "parked")
    counts = Samples(
        *(("iw_processed_total", {"type": "probe", "outcome": o}) for o in outcomes),
        ("iw_duplicates_total", {"type": "probe"}),
        ("iw_retried_total", {"type": "probe"}),
        ("iw_parked_total", {"type": "probe"}),
        ("iw_handler_duration_seconds_count", {"type": "probe"}),
        ("iw_handler_duration_seconds_sum", {"type": "probe"}),
        ("iw_handler_duration_seconds_bucket", {"type": "probe", "le": "0.25"}),
        ("iw_result_events_total", {"event": "probe.written"}),
    )
    async with running(probe_runtime) as worker:
        done = await publish(probe_runtime, "probe", "command", "write", {"key": "ok", "value": 1}, team_id=TEAM)
        slow = await publish(
            probe_runtime, "probe", "command", "write", {"key": "slow", "value": 2, "sleep": 0.3}, team_id=TEAM
        )
        await publish(
            probe_runtime, "probe", "command", "write", {"key": "again", "value": 3, "fail_first": True}, team_id=TEAM
        )
        crashed = await publish(
            probe_runtime, "probe", "command", "write", {"key": "bug", "value": 4, "crash": True}, team_id=TEAM
        )
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) = 3 FROM probe_rows"))
        await eventually(lambda: counts.moved()["iw_parked_total{type=probe}"] == 1)
        await worker.wait_idle()
        # the same id again: acknowledged without running
        await publish(probe_runtime, "probe", "command", "write", {"key": "ok", "value": 1}, team_id=TEAM, id=done.id)
        await eventually(lambda: counts.moved()["iw_duplicates_total{type=probe}"] == 1)
        await worker.wait_idle()
        await results.wait_for("probe.written", count=3)
    assert crashed.id and slow.id
    moved = counts.moved()
    assert moved == {
        "iw_processed_total{outcome=success,type=probe}": 3,  # ok, slow, and again on its retry
        "iw_processed_total{outcome=duplicate,type=probe}": 1,
        "iw_processed_total{outcome=retried,type=probe}": 1,
        "iw_processed_total{outcome=parked,type=probe}": 1,
        "iw_duplicates_total{type=probe}": 1,
        "iw_retried_total{type=probe}": 1,
        "iw_parked_total{type=probe}": 1,
        "iw_handler_duration_seconds_count{type=probe}": 5,  # ok, slow, again twice, bug: not the duplicate
        "iw_handler_duration_seconds_sum{type=probe}": moved["iw_handler_duration_seconds_sum{type=probe}"],
        "iw_handler_duration_seconds_bucket{le=0.25,type=probe}": 4,  # all but the slow one
        "iw_result_events_total{event=probe.written}": 3,
    }
    assert 0.3 <= moved["iw_handler_duration_seconds_sum{type=probe}"] < 2  # seconds


async def test_in_flight_counts_what_was_received_and_is_not_settled_yet(probe_runtime: Runtime) -> None:
    GATE.reset()
    gated = await publish(
        probe_runtime, "probe", "command", "write", {"key": "held", "value": 1, "gated": True}, team_id=TEAM
    )
    quick = await publish(probe_runtime, "probe", "command", "write", {"key": "quick", "value": 2}, team_id=TEAM)
    base = sample("iw_in_flight", type="probe")
    async with running(probe_runtime) as worker:  # both wait on the queue: one batch takes them
        assert GATE.opened is not None
        try:
            await eventually(lambda: GATE.waiting == 1)
            await eventually(
                lambda: probe_runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", quick.id)
            )
            # the quick one is committed and acknowledged; the held one is still running
            await eventually(lambda: sample("iw_in_flight", type="probe") == base + 1)
        finally:
            GATE.opened.set()
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", gated.id))
        await worker.wait_idle()
        assert sample("iw_in_flight", type="probe") == base

    # stopped while a handler still runs past the grace: that message goes back, not in flight
    GATE.reset()
    probe_runtime.settings.shutdown_grace = 0.2
    worker = Worker(probe_runtime)
    await worker.start()
    try:
        await publish(
            probe_runtime, "probe", "command", "write", {"key": "late", "value": 3, "gated": True}, team_id=TEAM
        )
        await eventually(lambda: GATE.waiting == 1)
        assert sample("iw_in_flight", type="probe") == base + 1
    finally:
        await worker.stop()
    assert sample("iw_in_flight", type="probe") == base


async def test_commit_batch_size_is_the_messages_of_one_commit(probe_runtime: Runtime) -> None:
    count, size = (
        ("iw_commit_batch_size_count", {}),
        ("iw_commit_batch_size_sum", {}),
    )
    samples = Samples(count, size)
    for i in range(20):  # waiting on the queue when the worker starts: committed together
        await publish(probe_runtime, "probe", "command", "write", {"key": f"k{i}", "value": i}, team_id=TEAM)
    async with running(probe_runtime) as worker:
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) = 20 FROM processed_events"))
        await worker.wait_idle()
    moved = samples.moved()
    commits, messages = moved["iw_commit_batch_size_count{}"], moved["iw_commit_batch_size_sum{}"]
    assert messages == 20  # every message in exactly one commit
    assert 1 <= commits < 20  # several to a commit


# --- the JSON log lines ------------------------------------------------------------------------------------------


class Lines:
    """A process's stdout, line by line, read on a thread as it comes."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    def records(self) -> Iterator[dict[str, Any]]:
        for line in list(self.lines):
            record = orjson.loads(line)  # every line is one JSON object
            assert isinstance(record, dict), line
            yield record

    def find(self, **fields: Any) -> dict[str, Any] | None:
        return next((r for r in self.records() if all(r.get(k) == v for k, v in fields.items())), None)

    def join(self) -> None:
        self._thread.join(10)


async def test_a_worker_logs_one_json_object_per_line_with_the_documented_fields(
    probe_runtime: Runtime, env: dict[str, str]
) -> None:
    integration_id = str(await probe_runtime.pool.fetchval("SELECT id FROM integrations"))
    process = spawn_worker({**env, "IW_REGISTRY": PROBE, "IW_LOG_FORMAT": "json"})
    assert process.stdout is not None
    output = Lines(process.stdout)
    try:
        await eventually(lambda: output.find(event="worker consuming"), timeout=30)
        noted = await publish(
            probe_runtime, "probe", "command", "write", {"key": "n", "value": 1, "note": "writing a row"}, team_id=TEAM
        )
        crashed = await publish(
            probe_runtime, "probe", "command", "write", {"key": "b", "value": 2, "crash": True}, team_id=TEAM
        )
        retried = await publish(
            probe_runtime, "probe", "command", "write", {"key": "r", "value": 3, "fail_first": True}, team_id=TEAM
        )
        handler_line = await eventually(lambda: output.find(event="writing a row"))
        retried_line = await eventually(lambda: output.find(event="message", outcome="retried"))
        parked_line = await eventually(lambda: output.find(event="message", outcome="parked"))
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
        output.join()
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, "".join(output.lines)

    # a handler's own line: the message's fields, its integration, the trace id it came with
    assert {k: handler_line[k] for k in ("event_id", "type", "name", "team_id", "integration_id", "trace_id")} == {
        "event_id": noted.id,
        "type": "probe",
        "name": "write",
        "team_id": TEAM,
        "integration_id": integration_id,
        "trace_id": noted.trace_id,
    }
    assert handler_line["level"] == "info" and handler_line["key"] == "n"

    # a parked message's line
    assert {k: parked_line[k] for k in ("event_id", "type", "name", "team_id", "outcome", "level")} == {
        "event_id": crashed.id,
        "type": "probe",
        "name": "write",
        "team_id": TEAM,
        "outcome": "parked",
        "level": "error",
    }
    assert "KeyError: 'missing-key'" in parked_line["reason"]
    assert isinstance(parked_line["duration_ms"], int | float) and parked_line["duration_ms"] >= 0
    assert datetime.fromisoformat(parked_line["timestamp"]).utcoffset() is not None
    # a retried message's line
    assert retried_line["event_id"] == retried.id and retried_line["level"] == "warning"
    assert retried_line["reason"] == "the provider is busy (first try)" and retried_line["team_id"] == TEAM
    records = list(output.records())  # and every line of the process parses as JSON
    assert all("timestamp" in r and "level" in r and "event" in r for r in records)
    assert any(r["event"] == "wave settled" and "outcomes" in r for r in records)
