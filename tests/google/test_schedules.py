"""The runtime's schedules: a due job runs on exactly one worker at a time, failures come back
later, and the Gmail watch renewal is one (it renews the watches that are due, once)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import Results, eventually
from tests.fakes.google import FakeGoogleState
from tests.google.conftest import ANN, TOPIC, install_type, link_user, mail, watched
from worker.core.settings import Settings
from worker.platform import attach
from worker.runtime.runtime import Runtime
from worker.runtime.schedules import ScheduleRunner
from worker.runtime.worker import Worker
from worker.sdk import Context as BackgroundContext
from worker.sdk import Integration, Registry, Schedule

ROOT = Path(__file__).resolve().parents[2]


class Ticker:
    def __init__(self) -> None:
        self.runs = 0
        self.fail = False
        self.running = asyncio.Event()
        self.finish = asyncio.Event()
        self.finish.set()  # a test that wants a run to last clears it, and sets it to end the run

    async def job(self, ctx: BackgroundContext) -> None:
        self.runs += 1
        self.running.set()
        await self.finish.wait()
        if self.fail:
            raise RuntimeError("the job broke")


@pytest.fixture
async def ticker_runtimes(settings: Settings) -> AsyncIterator[tuple[Ticker, Runtime, Runtime]]:
    ticker = Ticker()
    registry = Registry(
        [Integration(type="ticker", name="Ticker", description="test", schedules=[Schedule("tick", 3600, ticker.job)])]
    )
    first, second = attach(Runtime(settings, registry)), attach(Runtime(settings, registry))
    await first.start(broker=False)
    await second.start(broker=False)
    try:
        yield ticker, first, second
    finally:
        await first.stop()
        await second.stop()
        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')
        await conn.close()


async def test_a_due_schedule_runs_on_exactly_one_worker(ticker_runtimes: tuple[Ticker, Runtime, Runtime]) -> None:
    ticker, first, second = ticker_runtimes
    runners = [ScheduleRunner(first, with_maintenance=False), ScheduleRunner(second, with_maintenance=False)]
    for runner in runners:
        await runner.register()  # each worker does at start
    ticker.finish.clear()

    running = asyncio.create_task(runners[0].run_due())
    await ticker.running.wait()  # the first worker runs the job, holding its row
    assert await runners[1].run_due() == []  # the second finds it taken
    ticker.finish.set()

    assert await running == ["ticker.tick"]
    assert ticker.runs == 1
    row = await first.pool.fetchrow("SELECT runs, last_error, next_run_at - now() AS wait FROM schedules")
    assert row["runs"] == 1 and row["last_error"] is None
    assert 3500 < row["wait"].total_seconds() <= 3600
    assert await asyncio.gather(*(runner.run_due() for runner in runners)) == [[], []]  # not due again
    assert ticker.runs == 1


async def test_a_failed_job_comes_back_later(ticker_runtimes: tuple[Ticker, Runtime, Runtime]) -> None:
    ticker, first, _ = ticker_runtimes
    ticker.fail = True
    runner = ScheduleRunner(first, retry_seconds=60, with_maintenance=False)

    assert await runner.run_due() == ["ticker.tick"]

    row = await first.pool.fetchrow("SELECT runs, last_error, next_run_at - now() AS wait FROM schedules")
    assert row["runs"] == 0 and "the job broke" in row["last_error"]
    assert 50 < row["wait"].total_seconds() <= 60


async def test_the_watch_schedule_renews_what_is_due_once(
    runtime: Runtime, google: FakeGoogleState, worker: Worker
) -> None:
    gmail = await install_type(runtime, "gmail")
    link_id, _, _ = await link_user(runtime, google, gmail)  # linked, never watched
    box = google.mailbox(ANN)
    runners = [ScheduleRunner(runtime, with_maintenance=False), ScheduleRunner(runtime, with_maintenance=False)]

    await asyncio.gather(*(runner.run_due() for runner in runners))

    row = await eventually(
        lambda: runtime.pool.fetchrow(
            "SELECT history_id FROM gmail_mailboxes WHERE link_id = $1 AND watch_expires_at IS NOT NULL",
            link_id,
        )
    )
    assert int(row["history_id"]) == box.history_id  # the first watch sets the cursor
    assert box.watch_topic == TOPIC
    await runtime.pool.execute("UPDATE schedules SET next_run_at = now()")  # the next hour
    await asyncio.gather(*(runner.run_due() for runner in runners))
    await worker.wait_idle()
    assert box.watch_calls == 1  # renewed less than a day ago: not due


async def test_a_worker_process_runs_the_schedules(
    runtime: Runtime, env: dict[str, str], google: FakeGoogleState
) -> None:
    gmail = await install_type(runtime, "gmail")
    await link_user(runtime, google, gmail)
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "--types", "gmail"],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await eventually(lambda: google.mailbox(ANN).watch_calls == 1, timeout=20)
        names = {r["name"] for r in await runtime.pool.fetch("SELECT name FROM schedules")}
        # the schedules of the types it consumes, and the runtime's own maintenance
        assert names == {
            "gmail.renew_watches",
            "gmail.poll_quiet_mailboxes",
            "worker.prune_inbox",
            "worker.prune_expired_flows",
            "worker.relay_outbox",
        }
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert process.returncode == 0


async def test_a_quiet_mailbox_is_synced_even_when_its_notification_was_lost(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, results: Results
) -> None:
    gmail = await install_type(runtime, "gmail")
    link_id, _, _ = await link_user(runtime, google, gmail)
    await watched(runtime, google, gmail, link_id)
    lost = google.mailbox(ANN).deliver(mail("bob@client.example", "Bug nobody notified us of"))
    await runtime.pool.execute("UPDATE gmail_mailboxes SET last_synced_at = now() - interval '2 hours'")

    await ScheduleRunner(runtime, with_maintenance=False).run_due()

    [event] = await results.wait_for("task.intake")
    assert event["data"]["metadata"]["message_id"] == lost
