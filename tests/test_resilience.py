"""The broker drops the worker's connection, PostgreSQL kills its sessions: nothing is lost, nothing
is done twice (a second run of a write here would be refused by the primary key, and parked)."""

from __future__ import annotations

import asyncio
import subprocess

import aio_pika
import aio_pika.exceptions
import asyncpg

from tests.conftest import INSTALLATION_ID, eventually, queue_consumers
from tests.conftest import TEAM as GITHUB_TEAM
from tests.fakes.github import FakeGitHubState
from tests.helpers import publish
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

TEAM = "team-resilience"


async def _load(runtime: Runtime, count: int, sleep: float) -> None:
    await asyncio.gather(
        *(
            publish(runtime, "probe", "command", "write", {"key": f"k{i}", "value": i, "sleep": sleep}, team_id=TEAM)
            for i in range(count)
        )
    )


async def _exactly_once(runtime: Runtime, count: int) -> None:
    """Checked on a connection of the test's own: the runtime's pool is what is under attack."""
    check = await asyncpg.connect(runtime.settings.database_url.get_secret_value())
    try:
        await check.execute(f'SET search_path TO "{runtime.settings.database_schema}"')
        await eventually(lambda: check.fetchval("SELECT count(*) = $1 FROM probe_rows", count), timeout=60)
        await eventually(lambda: check.fetchval("SELECT count(*) = $1 FROM processed_events", count), timeout=30)
        assert await check.fetchval("SELECT count(*) FROM integration_logs WHERE level = 'error'") == 0
    finally:
        await check.close()


async def _close_amqp_connections(name: str) -> int:
    """Close, from the broker's side and all at once, the connections whose client name starts
    with `name`."""
    listed = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "list_connections", "pid", "client_properties"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    pids = [
        pid
        for pid, _, properties in (line.partition("\t") for line in listed.stdout.splitlines())
        if pid.startswith("<") and f'{{"connection_name","{name}' in properties
    ]
    await asyncio.gather(
        *(
            asyncio.to_thread(
                subprocess.run,
                ["rabbitmqctl", "close_connection", pid, "test: broker drops the connection"],
                capture_output=True,
                check=True,
                timeout=60,
            )
            for pid in pids
        )
    )
    return len(pids)


async def _unfinished(runtime: Runtime, count: int) -> None:
    """The fault hit mid-stream: what is left can only be done after the worker recovered."""
    check = await asyncpg.connect(runtime.settings.database_url.get_secret_value())
    try:
        await check.execute(f'SET search_path TO "{runtime.settings.database_schema}"')
        assert await check.fetchval("SELECT count(*) FROM probe_rows") < count
    finally:
        await check.close()


async def test_the_broker_dropping_the_connection_loses_and_repeats_nothing(probe_runtime: Runtime) -> None:
    await _load(probe_runtime, 800, sleep=0.1)  # ~5 s of work; closing takes rabbitmqctl ~1 s
    worker = Worker(probe_runtime, concurrency=16, prefetch=16)  # most wait in the queue
    await worker.start()
    try:
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) > 30 FROM probe_rows"))
        name = f"integration-worker/{probe_runtime.topology.prefix}"
        # the consumer's, the publisher's and the management connection: all three
        assert await _close_amqp_connections(name) == 3
        await _unfinished(probe_runtime, 800)  # the rest needs the worker to consume again
        await _exactly_once(probe_runtime, 800)
    finally:
        await worker.stop()


async def test_postgresql_killing_the_sessions_loses_and_repeats_nothing(probe_runtime: Runtime) -> None:
    await _load(probe_runtime, 300, sleep=0.05)
    worker = Worker(probe_runtime, concurrency=16, prefetch=32)  # most wait in the queue
    await worker.start()
    admin = await asyncpg.connect(probe_runtime.settings.database_url.get_secret_value())
    try:
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) > 30 FROM probe_rows"))
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            f"integration-worker/{probe_runtime.topology.prefix}",
        )
        assert killed >= 1
        await _unfinished(probe_runtime, 300)
        await _exactly_once(probe_runtime, 300)
    finally:
        await admin.close()
        await worker.stop()


async def test_a_channel_error_mid_stream_loses_and_repeats_nothing(probe_runtime: Runtime) -> None:
    await _load(probe_runtime, 300, sleep=0.01)
    worker = Worker(probe_runtime, concurrency=16, prefetch=32)  # most wait in the queue
    await worker.start()
    try:
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) > 30 FROM probe_rows"))
        channel = next(iter(worker.intake._shards.values())).channel
        assert channel is not None
        channel.ack(10_000_000)  # an unknown delivery tag: the broker closes that shard's channel for this
        await _unfinished(probe_runtime, 300)
        await _exactly_once(probe_runtime, 300)
    finally:
        await worker.stop()


async def test_a_lost_queue_is_declared_again_and_the_other_types_keep_flowing(
    probe_runtime: Runtime, github: FakeGitHubState
) -> None:
    await install(probe_runtime, InstallRequest("github", GITHUB_TEAM, {"installationId": INSTALLATION_ID}))
    worker = Worker(probe_runtime, types=["probe", "github"])
    await worker.start()
    lost = probe_runtime.topology.queues("probe")[0]
    try:
        connection = await aio_pika.connect(probe_runtime.settings.amqp_url.get_secret_value())
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(lost)  # an operator's mistake, or a broker that lost it
        # the other types go on meanwhile
        await publish(probe_runtime, "github", "command", "list_repositories", {}, team_id=GITHUB_TEAM)
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) = 1 FROM processed_events"))
        # the queue is the service's own: declared again, and consumed again
        await eventually(lambda: _consumers(probe_runtime, lost), timeout=30)
        assert all(status["consuming"] == status["owned"] for status in worker.intake.status().values())
        await _load(probe_runtime, 40, sleep=0)
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) = 40 FROM probe_rows"))
        await eventually(lambda: probe_runtime.pool.fetchval("SELECT count(*) = 41 FROM processed_events"))
    finally:
        await worker.stop()


async def _consumers(runtime: Runtime, queue: str) -> bool:
    try:
        return await queue_consumers(runtime, queue) == 1
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return False
