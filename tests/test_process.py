"""The service as processes: killed mid-flight, stopped with SIGTERM, run as one command."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import httpx

from tests.conftest import TEAM, eventually, pull_request_payload, queue_depth, signed_github
from tests.fakes.github import FakeGitHubState
from tests.helpers import publish, spawn_worker
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

COMMENT = {"repository": "acme/app", "issue_number": 7, "body": "Deployed."}


async def _wait_started(github: FakeGitHubState, timeout: float = 20) -> None:
    started = await asyncio.to_thread(github.comment_started.wait, timeout)
    assert started, "the worker never called GitHub"


async def test_killing_the_worker_mid_flight_loses_nothing_and_repeats_nothing(
    runtime: Runtime, github: FakeGitHubState, github_integration: object, env: dict[str, str]
) -> None:
    github.comment_delay = 5.0  # GitHub has the comment; the worker dies before hearing back
    process = spawn_worker(env)
    try:
        envelope = await publish(runtime, "github", "command", "comment", COMMENT, team_id=TEAM)
        await _wait_started(github)
        process.kill()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert await runtime.pool.fetchval("SELECT count(*) FROM processed_events") == 0  # nothing was committed
    github.comment_delay = 0

    survivor = Worker(runtime)
    await survivor.start()
    try:
        await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", envelope.id))
        await survivor.wait_idle()
    finally:
        await survivor.stop()
    assert len(github.comments) == 1  # the redelivered command found its own comment
    assert await queue_depth(runtime, runtime.topology.queues("github")) == 0


async def test_sigterm_lets_the_handler_in_flight_finish_then_exits(
    runtime: Runtime, github: FakeGitHubState, github_integration: object, env: dict[str, str]
) -> None:
    github.comment_delay = 1.5
    metrics_port = _free_port()
    process = spawn_worker({**env, "IW_WORKER_METRICS_PORT": str(metrics_port)})
    try:
        envelope = await publish(runtime, "github", "command", "comment", COMMENT, team_id=TEAM)
        await _wait_started(github)
        async with httpx.AsyncClient() as client:  # a worker alone serves its own metrics
            metrics = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        assert 'iw_in_flight{type="github"} 1.0' in metrics
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
        output = process.stdout.read() if process.stdout else ""
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, output
    assert await runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", envelope.id) == 1
    assert await queue_depth(runtime, runtime.topology.queues("github")) == 0  # acknowledged, not requeued
    assert len(github.comments) == 1
    assert '"outcomes":{"success":1}' in output and "worker stopped" in output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_run_serves_webhooks_and_handles_them_in_one_process(
    runtime: Runtime, github: FakeGitHubState, github_integration: object, env: dict[str, str]
) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run"],
        env={**os.environ, **env, "IW_HTTP_HOST": "127.0.0.1", "IW_HTTP_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, timeout=30, interval=0.2)
            body, headers = signed_github("pull_request", pull_request_payload())
            response = await client.post("/webhooks/github", content=body, headers=headers)
            assert response.status_code == 202
            await eventually(lambda: runtime.pool.fetchval("SELECT count(*) FROM github_pull_requests"))
            assert "iw_webhooks_received_total" in (await client.get("/metrics")).text
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()


async def test_sigterm_stops_a_process_still_waiting_for_the_database(env: dict[str, str]) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{_free_port()}/postgres"  # nothing listens there
    process = spawn_worker({**env, "IW_DATABASE_URL": nowhere})
    output = ""

    async def retrying() -> None:
        nonlocal output
        assert process.stdout is not None
        while "database not ready, retrying" not in output:
            line = await asyncio.to_thread(process.stdout.readline)
            assert line, f"exited early: {output}"
            output += line

    try:
        await asyncio.wait_for(retrying(), timeout=20)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 15)
        output += process.stdout.read() if process.stdout else ""
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, output
    assert "stopped before start-up finished" in output


async def test_every_role_answers_health_and_a_worker_says_which_types_it_consumes(
    runtime: Runtime, env: dict[str, str]
) -> None:
    worker_port, api_port = _free_port(), _free_port()
    worker = spawn_worker({**env, "IW_WORKER_METRICS_PORT": str(worker_port)}, "--types", "github,slack")
    api = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "api"],
        env={**os.environ, **env, "IW_HTTP_HOST": "127.0.0.1", "IW_HTTP_PORT": str(api_port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as client:

            async def answers(url: str) -> httpx.Response | None:
                try:
                    response = await client.get(url)
                except httpx.TransportError:
                    return None
                return response if response.status_code == 200 else None

            worker_ready = await eventually(lambda: answers(f"http://127.0.0.1:{worker_port}/readyz"), timeout=30)
            api_ready = await eventually(lambda: answers(f"http://127.0.0.1:{api_port}/readyz"), timeout=30)
            worker_metrics = (await client.get(f"http://127.0.0.1:{worker_port}/metrics")).text
            api_metrics = await client.get(f"http://127.0.0.1:{api_port}/metrics")
            missing = await client.get(f"http://127.0.0.1:{worker_port}/nothing")
    finally:
        for process in (worker, api):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    shards = len(runtime.topology.queues("github"))
    assert worker_ready.json() == {
        "status": "ready",
        "broker": True,
        "database": True,
        "types": {t: {"owned": shards, "consuming": shards} for t in ("github", "slack")},
    }
    assert api_ready.json() == {"status": "ready", "broker": True, "database": True}
    assert f'iw_shards_owned{{type="github"}} {float(shards)}' in worker_metrics
    assert api_metrics.status_code == 200 and "iw_" in api_metrics.text
    assert missing.status_code == 404
