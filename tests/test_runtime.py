"""Runtime guarantees that are not about one provider."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import pytest
from prometheus_client import REGISTRY

from schemas.envelope import Envelope
from tests.conftest import Results, eventually, queue_consumers, queue_depth
from tests.helpers import cli, publish
from tests.support.probe import GATE, PROBE_REGISTRY, ProbeWritten
from worker.cli import dead
from worker.core.logging import get_logger
from worker.core.settings import Settings
from worker.runtime import migrations, store
from worker.runtime.runtime import Runtime
from worker.runtime.schedules import ScheduleRunner
from worker.runtime.worker import Worker
from worker.sdk.unit import Staged

TEAM = "team-probe"


@pytest.fixture
async def probe_worker(probe_runtime: Runtime) -> AsyncIterator[Worker]:
    worker = Worker(probe_runtime)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


async def test_a_write_the_database_refuses_parks_that_message_alone(
    probe_runtime: Runtime, probe_worker: Worker, env: dict[str, str]
) -> None:
    good = [
        await publish(probe_runtime, "probe", "command", "write", {"key": f"k{i}", "value": i}, team_id=TEAM)
        for i in range(5)
    ]
    bad = await publish(probe_runtime, "probe", "command", "write", {"key": "bad", "value": -1}, team_id=TEAM)

    await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) = 5 FROM probe_rows"))
    log = await eventually(
        lambda: probe_runtime.pool.fetchrow("SELECT message FROM integration_logs WHERE event_id = $1", bad.id)
    )
    assert "CheckViolation" in log["message"]
    done = await probe_runtime.pool.fetch("SELECT id FROM processed_events")
    assert {r["id"] for r in done} == {e.id for e in good}


async def test_an_event_that_cannot_be_serialised_parks_that_message_alone(
    probe_runtime: Runtime, probe_worker: Worker
) -> None:
    good = [
        await publish(
            probe_runtime, "probe", "command", "write", {"key": f"k{i}", "value": i, "once": True}, team_id=TEAM
        )
        for i in range(5)
    ]
    bad = await publish(
        probe_runtime,
        "probe",
        "command",
        "write",
        {"key": "big", "value": 1, "once": True, "unserialisable": True},
        team_id=TEAM,
    )

    await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) = 5 FROM probe_rows"))
    log = await eventually(
        lambda: probe_runtime.pool.fetchrow("SELECT message FROM integration_logs WHERE event_id = $1", bad.id)
    )
    assert "cannot be serialised" in log["message"]
    done = await probe_runtime.pool.fetch("SELECT id FROM processed_events")
    assert {r["id"] for r in done} == {e.id for e in good}


async def test_events_of_a_run_are_published_once_with_stable_ids(
    probe_runtime: Runtime, probe_worker: Worker, results: Results
) -> None:
    published_before = REGISTRY.get_sample_value("iw_result_events_total", {"event": "probe.written"}) or 0.0
    envelope = await publish(probe_runtime, "probe", "command", "write", {"key": "a", "value": 1}, team_id=TEAM)
    events = await results.wait_for("probe.written")
    assert events[0]["causation_id"] == envelope.id and events[0]["data"] == {"key": "a", "value": 1}
    assert REGISTRY.get_sample_value("iw_result_events_total", {"event": "probe.written"}) == published_before + 1
    # published, then deleted with the next commit or within a second
    await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) = 0 FROM outbox"))


async def test_outbox_leftovers_are_relayed(probe_runtime: Runtime, results: Results) -> None:
    """The relay is one of the runtime's maintenance schedules, run by one worker at a time."""
    schedules = ScheduleRunner(probe_runtime)
    await schedules.start()
    # As if a worker crashed after committing and before publishing.
    body = json.dumps({"event": "probe.written", "id": "left-behind"}).encode()
    await probe_runtime.pool.execute(
        "INSERT INTO outbox (id, exchange, routing_key, body, created_at)"
        " VALUES ($1, $2, $3, $4, now() - interval '1 minute')",
        "left-behind",
        probe_runtime.topology.results,
        "probe.written",
        body,
    )
    try:
        found = await results.wait_for("probe.written")
        assert found[0]["id"] == "left-behind"
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) = 0 FROM outbox"))
    finally:
        await schedules.stop()


async def test_a_message_that_is_not_an_envelope_is_parked(
    probe_runtime: Runtime, probe_worker: Worker, env: dict[str, str]
) -> None:
    connection = await aio_pika.connect(probe_runtime.settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(probe_runtime.topology.incoming)
        await exchange.publish(aio_pika.Message(b"{not json", message_id="poison-1"), "probe.command.write")

    async def parked() -> list[dict[str, object]]:
        return [p for p in json.loads(cli(env, "dead", "list", "--json").stdout) if p["id"] == "poison-1"]

    found = await eventually(parked, timeout=20, interval=0.3)
    assert "not a valid envelope" in str(found[0]["error"]) and found[0]["raw"] == "{not json"


async def test_an_unroutable_command_is_kept_on_the_parking_queue(probe_runtime: Runtime, env: dict[str, str]) -> None:
    connection = await aio_pika.connect(probe_runtime.settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(probe_runtime.topology.incoming)
        await exchange.publish(aio_pika.Message(b"{}", message_id="nowhere-1"), "jira.command.create_issue")
    parked = json.loads(cli(env, "dead", "list", "--json").stdout)
    assert parked[0]["id"] == "nowhere-1" and "unroutable" in parked[0]["error"]


@pytest.mark.parametrize(("concurrency", "at_once"), [(2, 2), (8, 8)])
async def test_in_flight_work_is_bounded_by_concurrency(probe_runtime: Runtime, concurrency: int, at_once: int) -> None:
    GATE.reset()
    worker = Worker(probe_runtime, concurrency=concurrency)
    await worker.start()
    try:
        for i in range(12):
            await publish(
                probe_runtime, "probe", "command", "write", {"key": f"s{i}", "value": i, "gated": True}, team_id=TEAM
            )
        await eventually(lambda: GATE.waiting == min(at_once, 12))  # the others wait for a slot
        await asyncio.sleep(0.2)
        assert GATE.waiting == at_once
        assert GATE.opened is not None
        GATE.opened.set()
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) = 12 FROM probe_rows"))
        assert GATE.most == at_once
    finally:
        await worker.stop()


async def test_worker_consumes_only_its_types(probe_runtime: Runtime) -> None:
    worker = Worker(probe_runtime, types=["github"])
    await worker.start()
    try:
        await publish(probe_runtime, "probe", "command", "write", {"key": "x", "value": 1}, team_id=TEAM)
        probe_queue = probe_runtime.topology.queues("probe")
        assert await queue_consumers(probe_runtime, probe_queue) == 0  # nobody takes it
        github = probe_runtime.topology.queues("github")
        assert await queue_consumers(probe_runtime, github) == len(github)  # each of its shards
        assert await queue_depth(probe_runtime, probe_queue) == 1
    finally:
        await worker.stop()
    with pytest.raises(ValueError, match="unknown integration types: jira"):
        Worker(probe_runtime, types=["jira"])


async def test_migrations_started_by_many_processes_at_once_apply_once(settings: Settings) -> None:
    schema = settings.database_schema
    pending = migrations.all_migrations(PROBE_REGISTRY.migration_dirs())
    connections = [await asyncpg.connect(settings.database_url.get_secret_value()) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrations.apply(c, schema, pending) for c in connections))
        assert sorted(len(a) for a in applied) == [0, 0, 0, len(pending)]
        rows = await connections[0].fetchval(f'SELECT count(*) FROM "{schema}".schema_migrations')
        assert rows == len(pending)
    finally:
        for c in connections:
            await c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await c.close()


async def test_an_event_emitted_once_per_key_is_published_once_across_messages(probe_runtime: Runtime) -> None:
    record = await probe_runtime.integration(
        "probe", str(await probe_runtime.pool.fetchval("SELECT id FROM integrations"))
    )
    received = Results()
    connection = await aio_pika.connect(probe_runtime.settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(probe_runtime.topology.results, "#")
        await queue.consume(received.on_message)
        staged = [Staged() for _ in range(3)]
        for i, batch in enumerate(staged):
            envelope = Envelope(id=f"once-{i}", type="probe", kind="command", name="write")
            ctx = probe_runtime.context(envelope, record, log=get_logger(), staged=batch)
            ctx.emit(ProbeWritten(key="shared", value=i), once="same-key")
            ctx.emit(ProbeWritten(key=f"own-{i}", value=i), once=f"own-key-{i}")
        await asyncio.gather(*(probe_runtime.commit(batch) for batch in staged))  # concurrent transactions

        events = await received.wait_for("probe.written", count=4)
        await received.all_in(probe_runtime)
    assert len(received.of("probe.written")) == 4
    assert sorted(e["data"]["key"] for e in events) == ["own-0", "own-1", "own-2", "shared"]


async def test_a_reply_whose_caller_is_gone_does_not_send_committed_events_again(probe_runtime: Runtime) -> None:
    record = await probe_runtime.integration(
        "probe", str(await probe_runtime.pool.fetchval("SELECT id FROM integrations"))
    )
    received = Results()
    connection = await aio_pika.connect(probe_runtime.settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(probe_runtime.topology.results, "#")
        await queue.consume(received.on_message)
        staged = Staged()
        envelope = Envelope(id="gone-caller", type="probe", kind="command", name="write")
        ctx = probe_runtime.context(
            envelope, record, log=get_logger(), staged=staged, reply_to="amq.gen-a-caller-long-gone", correlation_id="c"
        )
        ctx.emit(ProbeWritten(key="k", value=1))
        ctx.reply({"ok": True})
        await probe_runtime.commit(staged)

        await received.wait_for("probe.written")
        # the event went out and the reply had nowhere to go: nothing is left for the relay to send again
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) = 0 FROM outbox"))
        await received.all_in(probe_runtime)
    assert len(received.of("probe.written")) == 1


async def test_a_dispatch_bug_returns_only_what_it_had_not_handed_over(
    probe_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = await aio_pika.connect(probe_runtime.settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(probe_runtime.topology.incoming)
        await exchange.publish(aio_pika.Message(b"{not json", message_id="poison-2"), "probe.command.write")
    good = await publish(probe_runtime, "probe", "command", "write", {"key": "k", "value": 1}, team_id=TEAM)
    real = store.batch_look_up
    calls = 0

    async def fails_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the dispatcher")
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "batch_look_up", fails_once)
    worker = Worker(probe_runtime)
    await worker.start()  # both arrive in one group: the poison is handed over, then the lookup fails
    try:
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", good.id))
        await eventually(lambda: dead.list_parked(probe_runtime.broker, None))
        probe_queue = probe_runtime.topology.queues("probe")

        async def drained() -> bool:  # nothing sent back is left to come again
            return await queue_depth(probe_runtime, probe_queue) == 0

        await eventually(drained)
        await worker.wait_idle()
        parked = await dead.list_parked(probe_runtime.broker, None)
        assert calls >= 2
    finally:
        await worker.stop()
    assert [p.id for p in parked] == ["poison-2"]  # parked once: not also sent back to be parked again
    assert await probe_runtime.pool.fetchval("SELECT count(*) FROM probe_rows") == 1


async def test_a_handler_bug_parks_the_message_and_keeps_its_traceback(
    probe_runtime: Runtime, probe_worker: Worker, env: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    crashed = await publish(
        probe_runtime, "probe", "command", "write", {"key": "k", "value": 1, "crash": True}, team_id=TEAM
    )

    row = await eventually(
        lambda: probe_runtime.pool.fetchrow(
            "SELECT message, details FROM integration_logs WHERE key = 'message_parked' AND event_id = $1", crashed.id
        )
    )
    assert row["message"] == "unexpected error: KeyError: 'missing-key'"
    trace = row["details"]["traceback"]
    assert trace.startswith("Traceback (most recent call last)") and "_settings_of" in trace and "probe.py" in trace
    parked = json.loads(cli(env, "dead", "list", "--json").stdout)
    assert [p["id"] for p in parked] == [crashed.id] and parked[0]["attempts"] == 1  # a bug is not retried
    logged = capfd.readouterr().out
    assert "handler failed with a bug" in logged and "KeyError: 'missing-key'" in logged and "_settings_of" in logged


async def test_a_copy_that_waited_for_one_sent_back_is_sent_back_too_not_lost(
    probe_runtime: Runtime, probe_worker: Worker
) -> None:
    # The broker redelivers a message whose consumer connection dropped while its first copy still
    # runs; that copy then fails and cannot reach the retry queue (the broker's publisher is away
    # too) nor be requeued (its channel is gone). The redelivered copy is the only one left.
    GATE.reset()
    queue = probe_runtime.topology.queues("probe")
    payload = {"key": "only-copy", "value": 1, "gated": True, "fail_first": True}
    await publish(probe_runtime, "probe", "command", "write", payload, team_id=TEAM)
    await eventually(lambda: GATE.waiting == 1)

    consumer = probe_worker.intake._connection
    assert consumer is not None
    consumer.abort()  # the first copy keeps running; the broker redelivers the message

    async def redelivered() -> bool:
        return (
            consumer.is_closed
            and await queue_consumers(probe_runtime, queue) == len(queue)  # every shard consumed again
            and (await queue_depth(probe_runtime, queue) == 0)
        )

    await eventually(redelivered)
    broker, url = probe_runtime.broker, probe_runtime.broker.url
    broker._url = "amqp://guest:guest@127.0.0.1:1/"  # the publisher cannot come back for now
    assert broker._connection is not None
    broker._connection.abort()
    GATE.opened.set()  # the first copy fails (transient); its retry cannot be published

    await eventually(lambda: GATE.waiting == 0)
    broker._url = url  # the broker is back

    row = await eventually(
        lambda: probe_runtime.pool.fetchval("SELECT value FROM probe_rows WHERE key = 'only-copy'"), timeout=30
    )
    assert row == 1


async def test_an_integration_row_that_cannot_be_read_parks_its_messages_only(
    probe_runtime: Runtime, probe_worker: Worker
) -> None:
    await probe_runtime.pool.execute("ALTER TABLE integrations DROP CONSTRAINT integrations_config_is_an_object")
    broken = await probe_runtime.pool.fetchval(
        "INSERT INTO integrations (team_id, name, type, config) VALUES ('team-broken', 'Probe', 'probe', '[1]')"
        " RETURNING id"
    )
    lost = await publish(probe_runtime, "probe", "command", "write", {"key": "x", "value": 1}, integration_id=broken)
    fine = await publish(probe_runtime, "probe", "command", "write", {"key": "y", "value": 2}, team_id=TEAM)

    await eventually(lambda: probe_runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", fine.id))
    parked = await eventually(lambda: dead.list_parked(probe_runtime.broker, None))
    assert [(p.id, p.error) for p in parked] == [(lost.id, f"unknown integration for integration_id={broken}")]


async def test_a_config_that_is_not_an_object_is_refused_by_the_database(probe_runtime: Runtime) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await probe_runtime.pool.execute(
            "INSERT INTO integrations (team_id, name, type, config) VALUES ('t', 'Probe', 'probe', '[1]')"
        )


async def test_a_handler_cancelled_from_within_is_retried_and_the_batch_goes_on(
    probe_runtime: Runtime, probe_worker: Worker
) -> None:
    cancelled = await publish(
        probe_runtime, "probe", "command", "write", {"key": "c", "value": 1, "cancelled_inside": True}, team_id=TEAM
    )
    others = [
        await publish(probe_runtime, "probe", "command", "write", {"key": f"o{i}", "value": i}, team_id=TEAM)
        for i in range(3)
    ]

    await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) = 4 FROM probe_rows"), timeout=30)
    done = {r["id"] for r in await probe_runtime.pool.fetch("SELECT id FROM processed_events")}
    assert done == {cancelled.id, *(o.id for o in others)}


@pytest.mark.parametrize(("code", "reason"), [("40P01", "deadlock"), ("40001", "serialization")])
async def test_a_deadlocked_commit_is_tried_again_in_place_not_sent_to_the_retry_queue(
    probe_runtime: Runtime, probe_worker: Worker, code: str, reason: str
) -> None:
    # The commit fails twice the way PostgreSQL fails a transaction that lost a deadlock (or a
    # serialization check), then goes through.
    await probe_runtime.pool.execute(f"""
        CREATE SEQUENCE probe_contention;
        CREATE FUNCTION probe_contended(team text) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            IF nextval('probe_contention') <= 2 THEN
                RAISE EXCEPTION 'contended (test)' USING ERRCODE = '{code}';
            END IF;
        END $$;""")
    retried_before = REGISTRY.get_sample_value("iw_retried_total", {"type": "probe"}) or 0.0
    contended_before = REGISTRY.get_sample_value("iw_commit_retries_total", {"reason": reason}) or 0.0
    envelope = await publish(
        probe_runtime, "probe", "command", "write", {"key": "c", "value": 1, "contended": True}, team_id=TEAM
    )
    await eventually(lambda: probe_runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", envelope.id))

    assert await probe_runtime.pool.fetchval("SELECT value FROM probe_rows WHERE key = 'c'") == 1
    assert (REGISTRY.get_sample_value("iw_commit_retries_total", {"reason": reason}) or 0.0) == contended_before + 2
    assert (REGISTRY.get_sample_value("iw_retried_total", {"type": "probe"}) or 0.0) == retried_before  # not sent
    assert await probe_runtime.pool.fetchval("SELECT nextval('probe_contention')") == 4  # three tries, no more
