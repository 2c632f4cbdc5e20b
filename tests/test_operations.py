"""What docs/operations.md promises an operator: `dead purge` and `dead replay --all`, the quorum
queues' delivery limit parking a crash loop, the inbox pruned by its schedule, `migrate`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest

from integrations.registry import REGISTRY
from tests.conftest import eventually, held, queue_depth, teardown
from tests.helpers import cli, publish
from tests.support.probe import PROBE_REGISTRY, PROVIDER
from worker.cli import dead
from worker.core.settings import Settings
from worker.platform import attach
from worker.platform.install import InstallRequest, install
from worker.runtime import migrations
from worker.runtime.runtime import Runtime
from worker.runtime.schedules import ScheduleRunner
from worker.runtime.worker import Worker

TEAM = "team-operations"
PROBE = "tests.support.probe:PROBE_REGISTRY"


@contextlib.asynccontextmanager
async def probe_service(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, **settings: str
) -> AsyncIterator[tuple[Runtime, dict[str, str]]]:
    """A runtime with the probe integration installed for TEAM, under these IW_* settings; and
    the environment an operator's CLI gets for the same service."""
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    runtime = attach(Runtime(Settings(), PROBE_REGISTRY))
    await runtime.start()
    try:
        await install(runtime, InstallRequest("probe", TEAM, {}))
        yield runtime, {**env, **settings, "IW_REGISTRY": PROBE}
    finally:
        await teardown(runtime)


def dead_list(env: dict[str, str]) -> list[dict[str, Any]]:
    listed = cli(env, "dead", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    parked: list[dict[str, Any]] = json.loads(listed.stdout)
    return parked


async def parked_ids(runtime: Runtime, env: dict[str, str], count: int) -> list[dict[str, Any]]:
    """`dead list`, once `count` messages are parked (waited for in this process: quicker)."""

    async def parked() -> bool:
        return len(await dead.list_parked(runtime.broker)) == count

    await eventually(parked, timeout=20)
    return dead_list(env)


# --- dead purge / dead replay --all --------------------------------------------------------------------


async def test_dead_purge_drops_every_parked_message_only_when_told_yes(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with probe_service(env, monkeypatch) as (runtime, cli_env):
        worker = Worker(runtime)
        await worker.start()
        try:
            bugs = [
                await publish(
                    runtime, "probe", "command", "write", {"key": f"b{i}", "value": i, "crash": True}, team_id=TEAM
                )
                for i in range(2)
            ]
            parked = await parked_ids(runtime, cli_env, 2)
        finally:
            await worker.stop()
        assert sorted(p["id"] for p in parked) == sorted(e.id for e in bugs)

        refused = cli(cli_env, "dead", "purge")
        assert refused.returncode == 2 and "--yes" in refused.stderr
        assert len(dead_list(cli_env)) == 2  # nothing dropped without --yes

        purged = cli(cli_env, "dead", "purge", "--yes")
        assert purged.returncode == 0, purged.stderr
        assert "2 message(s) purged" in purged.stdout
        assert cli(cli_env, "dead", "list").stdout.strip() == "no parked messages"
        assert await queue_depth(runtime, runtime.topology.parked) == 0


async def test_dead_replay_all_sends_every_parked_message_back_with_its_attempts_reset(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with probe_service(env, monkeypatch) as (runtime, cli_env):
        PROVIDER.away = True  # every write fails as transient: retried, then parked
        worker = Worker(runtime)
        await worker.start()
        try:
            writes = [
                await publish(
                    runtime,
                    "probe",
                    "command",
                    "write",
                    {"key": f"r{i}", "value": i, "needs_provider": True},
                    team_id=TEAM,
                )
                for i in range(3)
            ]
            parked = await parked_ids(runtime, cli_env, 3)
        finally:
            await worker.stop()
            PROVIDER.away = False  # the provider is back; the operator replays
        assert sorted(p["id"] for p in parked) == sorted(e.id for e in writes)
        max_attempts = runtime.settings.max_attempts
        assert all(p["attempts"] == max_attempts and p["error"] == "the provider is away" for p in parked)
        assert all(p["envelope"]["attempt"] == max_attempts - 1 for p in parked)
        # and one that is not an envelope: it cannot be replayed, and stays parked
        connection = await aio_pika.connect(runtime.settings.amqp_url.get_secret_value())
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(runtime.topology.incoming)
            await exchange.publish(aio_pika.Message(b"{not json", message_id="poison-r"), "probe.command.write")
        worker = Worker(runtime)
        await worker.start()
        try:
            await parked_ids(runtime, cli_env, 4)
        finally:
            await worker.stop()

        replayed = cli(cli_env, "dead", "replay", "--all")
        assert replayed.returncode == 0, replayed.stderr
        assert "3 message(s) replayed" in replayed.stdout
        assert "skipped poison-r: not an envelope" in replayed.stderr
        assert [p["id"] for p in dead_list(cli_env)] == ["poison-r"]

        # back on their queue, as on their first delivery
        probe_queue = runtime.topology.queues("probe")
        async with held(runtime, probe_queue) as waiting:
            back = {(m.routing_key, orjson.loads(m.body)["id"]): orjson.loads(m.body)["attempt"] for m in waiting}
        assert back == {("probe.command.write", e.id): 0 for e in writes}

        worker = Worker(runtime)
        await worker.start()
        try:
            await eventually(lambda: runtime.pool.fetchval("SELECT count(*) = 3 FROM probe_rows"))
            await eventually(
                lambda: runtime.pool.fetchval(
                    "SELECT count(*) = 3 FROM processed_events WHERE id = ANY($1::text[])", [e.id for e in writes]
                )
            )
        finally:
            await worker.stop()
        assert await queue_depth(runtime, probe_queue) == 0
        assert [p["id"] for p in dead_list(cli_env)] == ["poison-r"]


# --- the delivery limit: a crash loop ends parked -----------------------------------------------------


async def test_a_message_never_settled_is_parked_by_the_delivery_limit(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with probe_service(env, monkeypatch, IW_DELIVERY_LIMIT="2") as (runtime, cli_env):
        envelope = await publish(runtime, "probe", "command", "write", {"key": "loop", "value": 1}, team_id=TEAM)
        probe_queue = runtime.topology.queues("probe")
        deliveries = 0

        # A worker that dies mid-handler: it takes the message, and goes away without an
        # acknowledgement; the broker gives the message to the next one, until the delivery
        # limit parks it.
        async def dies_with_it_until_parked() -> bool:
            nonlocal deliveries
            async with held(runtime, probe_queue, quiet=0.2) as taken:
                if taken:
                    assert [orjson.loads(m.body)["id"] for m in taken] == [envelope.id]
                    deliveries += 1
                    return False
            return await queue_depth(runtime, runtime.topology.parked) == 1

        await eventually(dies_with_it_until_parked)
        assert deliveries == 3  # the first delivery and IW_DELIVERY_LIMIT more

        parked = await parked_ids(runtime, cli_env, 1)
        assert parked[0]["id"] == envelope.id
        assert parked[0]["routing_key"] == "probe.command.write" and parked[0]["type"] == "probe"
        assert parked[0]["error"] == "delivered too many times without an acknowledgement (a crash loop)"
        assert parked[0]["error_kind"] == "broker"
        assert parked[0]["envelope"]["payload"] == {"key": "loop", "value": 1}
        assert datetime.fromisoformat(parked[0]["parked_at"]).tzinfo is not None  # when the broker parked it
        listed = cli(cli_env, "dead", "list").stdout
        assert envelope.id in listed and "a crash loop" in listed

        # once the cause is fixed, it is replayed and handled like any other
        assert "1 message(s) replayed" in cli(cli_env, "dead", "replay", envelope.id).stdout
        worker = Worker(runtime)
        await worker.start()
        try:
            await eventually(lambda: runtime.pool.fetchval("SELECT value FROM probe_rows WHERE key = 'loop'"))
        finally:
            await worker.stop()


async def test_a_batch_that_keeps_failing_in_the_worker_ends_parked_by_the_delivery_limit(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's own bug (not a handler's): each time, the batch's messages go back to the
    queue; the delivery limit ends the loop."""
    async with probe_service(env, monkeypatch, IW_DELIVERY_LIMIT="2") as (runtime, cli_env):
        envelope = await publish(runtime, "probe", "command", "write", {"key": "bug", "value": 1}, team_id=TEAM)
        worker = Worker(runtime)

        async def broken(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError("a bug in the worker")

        monkeypatch.setattr(worker.pipeline, "_route", broken)
        await worker.start()
        try:
            parked = await parked_ids(runtime, cli_env, 1)
        finally:
            await worker.stop()
        assert parked[0]["id"] == envelope.id and "a crash loop" in parked[0]["error"]
        assert await queue_depth(runtime, runtime.topology.queues("probe")) == 0
        assert await runtime.pool.fetchval("SELECT count(*) FROM processed_events") == 0


# --- inbox pruning ----------------------------------------------------------------------------------------


async def test_the_prune_inbox_schedule_forgets_processed_ids_older_than_the_retention(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with probe_service(env, monkeypatch, IW_INBOX_RETENTION_DAYS="0.5") as (runtime, _):
        hours = timedelta(hours=1)
        ages = {"old": 13 * hours, "older": 40 * 24 * hours, "recent": 11 * hours, "now": 0 * hours}
        for id_, age in ages.items():
            await runtime.pool.execute(
                "INSERT INTO processed_events (id, type, processed_at) VALUES ($1, 'probe', now() - $2::interval)",
                id_,
                age,
            )
            await runtime.pool.execute(
                "INSERT INTO action_results (id, type, action, status, body, created_at)"
                " VALUES ($1, 'probe', 'write', 'succeeded', '{}', now() - $2::interval)",
                id_,
                age,
            )
        schedules = ScheduleRunner(runtime)  # as every worker process runs it
        await schedules.start()
        try:

            async def ran() -> bool:
                return bool(await runtime.pool.fetchval("SELECT runs FROM schedules WHERE name = 'worker.prune_inbox'"))

            await eventually(ran)
        finally:
            await schedules.stop()
        kept = await runtime.pool.fetch("SELECT id FROM processed_events ORDER BY id")
        assert [r["id"] for r in kept] == ["now", "recent"]
        answers = await runtime.pool.fetch("SELECT id FROM action_results ORDER BY id")
        assert [r["id"] for r in answers] == ["now", "recent"]
        row = await runtime.pool.fetchrow(
            "SELECT every_seconds, runs, last_error, next_run_at - last_run_at AS until_next"
            " FROM schedules WHERE name = 'worker.prune_inbox'"
        )
        assert row["every_seconds"] == 3600 and row["runs"] == 1 and row["last_error"] is None
        assert row["until_next"].total_seconds() == pytest.approx(3600, abs=5)  # hourly


# --- migrate ------------------------------------------------------------------------------------------------


async def test_migrate_applies_what_is_pending_and_again_nothing(env: dict[str, str]) -> None:
    schema = env["IW_DATABASE_SCHEMA"]
    core_and_integrations = migrations.all_migrations(REGISTRY.migration_dirs())
    with_probe = migrations.all_migrations(PROBE_REGISTRY.migration_dirs())
    probe_only = [m for m in with_probe if m.component == "probe"]
    conn = await asyncpg.connect(env["IW_DATABASE_URL"])
    try:
        assert not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)  # empty: no schema yet

        first = cli(env, "migrate")
        assert first.returncode == 0, first.stderr
        assert _summary(first.stdout) == [
            f"{len(core_and_integrations)} migration(s) applied",
            *(f"  {_label(m)}" for m in core_and_integrations),
        ]
        components = {m.component for m in core_and_integrations}
        assert "core" in components and len(components) > 1  # the integrations' own migrations too
        applied = await conn.fetch(f'SELECT component, version FROM "{schema}".schema_migrations')
        assert {(r["component"], r["version"]) for r in applied} == {
            (m.component, m.version) for m in core_and_integrations
        }
        tables = {
            r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
        }
        assert {"integrations", "processed_events", "outbox", "schedules", "github_pull_requests"} <= tables

        again = cli(env, "migrate")
        assert again.returncode == 0, again.stderr
        assert _summary(again.stdout) == ["0 migration(s) applied"]

        # an integration added to the registry later: only its migrations are pending
        added = cli({**env, "IW_REGISTRY": PROBE}, "migrate")
        assert added.returncode == 0, added.stderr
        assert _summary(added.stdout) == [
            f"{len(probe_only)} migration(s) applied",
            *(f"  {_label(m)}" for m in probe_only),
        ]
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".probe_rows') == 0
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".schema_migrations') == len(with_probe)
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


def _label(migration: migrations.Migration) -> str:
    return f"{migration.component}/{migration.version:04d}_{migration.name}"


def _summary(stdout: str) -> list[str]:
    """What `migrate` prints for the operator (its log lines, JSON here, aside)."""
    return [line for line in stdout.splitlines() if not line.startswith("{")]
