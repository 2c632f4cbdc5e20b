"""The project's own measurements: the worker (preloaded events, consumer start to last commit),
the ingress (wrk against one `integration-worker ingress` process) and the latency from a
webhook accepted to its row committed at a steady rate. Each returns a dict of figures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench import system
from integrations.registry import REGISTRY
from schemas.envelope import Envelope
from worker.core.settings import Settings
from worker.platform import attach
from worker.runtime.runtime import Runtime

SECRET = "bench-webhook-secret"
TEAM = "bench-team"
INSTALLATION = 777
ROOT = Path(__file__).resolve().parent.parent


def environment(schema: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "IW_DATABASE_URL": os.environ.get("IW_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        "IW_DATABASE_SCHEMA": schema,
        "IW_BROKER_PREFIX": prefix,
        "IW_GITHUB_WEBHOOK_SECRET": SECRET,
        "IW_LOG_FORMAT": "json",
        "IW_LOG_LEVEL": os.environ.get("IW_LOG_LEVEL", "WARNING"),
        "IW_WORKER_METRICS_PORT": "0",
        "PYTHONPATH": str(ROOT),
    }


def pr_payload(n: int, updates: int = 1) -> dict[str, Any]:
    """Event n: pull request n // updates, its (n % updates)-th update (later ones are newer)."""
    pr, version = divmod(n, updates)
    return {
        "action": "opened" if version == 0 else "synchronize",
        "number": pr,
        "pull_request": {
            "id": 10_000_000 + pr,
            "number": pr,
            "title": f"Fixes ABC-{pr}: tidy the login flow",
            "body": "Refactors the session handling; see the design notes in the wiki. " * 8,
            "state": "open",
            "draft": False,
            "merged": False,
            "html_url": f"https://github.com/acme/app/pull/{pr}",
            "user": {"login": "octocat", "id": 1, "type": "User"},
            "assignees": [],
            "requested_reviewers": [],
            "updated_at": f"2026-11-20T{10 + version // 3600:02d}:{version // 60 % 60:02d}:{version % 60:02d}Z",
        },
        "repository": {"id": 9001, "full_name": "acme/app", "private": True},
        "installation": {"id": INSTALLATION},
        "sender": {"login": "octocat", "id": 1},
    }


def webhook(n: int, updates: int = 1, installation: int = INSTALLATION) -> Envelope:
    payload = pr_payload(n, updates)
    payload["installation"] = {"id": installation}
    return Envelope(
        id=f"github:{uuid.uuid4()}",
        type="github",
        kind="webhook",
        name="pull_request",
        external_team_id=str(installation),
        payload=payload,
    )


async def prepared(settings: Settings, teams: dict[str, int] | None = None) -> Runtime:
    """The runtime, with GitHub installed for each team (name -> installation id)."""
    runtime = attach(Runtime(settings, REGISTRY))
    await runtime.start()
    for team, installation in (teams or {TEAM: INSTALLATION}).items():
        await runtime.pool.execute(
            "INSERT INTO integrations (team_id, external_team_id, name, type, config)"
            " VALUES ($1, $2, 'GitHub', 'github', $3) ON CONFLICT DO NOTHING",
            team,
            str(installation),
            # no pull request comments: the peers' job is the webhook's row, and no GitHub answers here
            {"installationId": installation, "taskComments": False},
        )
    return runtime


async def reset(runtime: Runtime) -> None:
    await runtime.pool.execute(
        "TRUNCATE processed_events, outbox, emitted_once, github_pull_requests, integration_logs, schedules"
    )
    channel = await runtime.broker.channel(confirms=False)
    try:
        for name in [*runtime.topology.queues("github"), *runtime.topology.queues("github", bulk=True)]:
            await (await channel.declare_queue(name, passive=True)).purge()
        results = await channel.declare_queue(f"{runtime.settings.broker_prefix}.bench-results", durable=True)
        await results.purge()
    finally:
        await channel.close()
    await runtime.pool.execute("CHECKPOINT")


def _spawn(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    path = env.get("BENCH_WORKER_LOG") or os.environ.get("BENCH_WORKER_LOG")
    log = open(path, "ab") if path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "worker.cli", *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def worker(
    settings: Settings, env: dict[str, str], events: int, updates: int, profile: str | None
) -> dict[str, Any]:
    """Preload `events` pull_request webhooks, start one worker process, time it to the last commit."""
    runtime = await prepared(settings)
    try:
        await reset(runtime)
        channel = await runtime.broker.channel(confirms=False)
        results = await channel.declare_queue(f"{settings.broker_prefix}.bench-results", durable=True)
        await results.bind(runtime.topology.results, "task.#")  # a consumer of the results, as the platform
        for start in range(0, events, 2000):
            batch = [webhook(n, updates) for n in range(start, min(events, start + 2000))]
            outcomes = await runtime.broker.publish_many([runtime.outgoing(e) for e in batch])
            if any(outcomes):
                raise SystemExit(f"preload failed: {next(o for o in outcomes if o)}")
        before, started = system.processes(), time.time()
        process = _spawn(env, "worker", "--types", "github")
        profiler = _profile(process.pid, profile) if profile else None
        try:
            while await runtime.pool.fetchval("SELECT count(*) FROM processed_events") < events:
                if process.poll() is not None:
                    raise SystemExit("the worker exited")
                await asyncio.sleep(0.2)
            first, last = await runtime.pool.fetchrow(
                "SELECT extract(epoch FROM min(processed_at)), extract(epoch FROM max(processed_at)) FROM processed_events"
            )
            after = system.processes()
            while await runtime.pool.fetchval("SELECT count(*) FROM outbox"):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # the last confirms, then the count (a channel of its own sees it whole)
            counting = await runtime.broker.channel(confirms=False)
            status_events = (await counting.declare_queue(results.name, passive=True)).declaration_result.message_count
            await counting.close()
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=30)
            _stop(process)
        await results.delete(if_unused=False, if_empty=False)
        await channel.close()
        wall = float(last) - started
        cpu = system.split(before, after, process.pid)
        return {
            "events_s": round(events / wall, 1),
            "wall_s": round(wall, 2),
            "start_up_s": round(float(first) - started, 2),  # process start to the first commit
            "cpu_us_per_event": round(cpu["process"] / events * 1e6, 1),
            "cpu_s": cpu,
            "pull_requests": await runtime.pool.fetchval("SELECT count(*) FROM github_pull_requests"),
            "status_events": status_events,
            "emitted_once": await runtime.pool.fetchval("SELECT count(*) FROM emitted_once"),
        }
    finally:
        await runtime.stop()


def _profile(pid: int, path: str) -> subprocess.Popen[bytes]:
    fmt = "speedscope" if path.endswith(".json") else "raw"
    return subprocess.Popen(
        ["py-spy", "record", "-p", str(pid), "-r", "250", "--format", fmt, "-o", path, "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


WARM_UP = 2.0  # seconds of the run not counted: the worker's first statements are prepared then


async def latency(
    settings: Settings,
    env: dict[str, str],
    rate: float,
    seconds: float,
    profile: str | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Webhooks published at a steady `rate` (as the ingress would), `workers` worker processes
    running: p50/p99 of accepted (published) to row committed (its transaction's start, as the
    peers measure it), after the first WARM_UP seconds."""
    runtime = await prepared(settings)
    try:
        await reset(runtime)
        processes = [_spawn(env, "worker", "--types", "github") for _ in range(workers)]
        process = processes[0]
        profiler = None
        try:
            while await runtime.pool.fetchval("SELECT count(*) FROM schedules") == 0:  # the worker is up
                await asyncio.sleep(0.1)
            while await runtime.pool.fetchval("SELECT count(*) FROM worker_members") < workers:
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)  # the shards split between them
            profiler = _profile(process.pid, profile) if profile else None
            before, busy_before = system.processes(), system.busy()
            sent: dict[str, float] = {}
            loop = asyncio.get_running_loop()
            begin = loop.time()
            pending: set[asyncio.Task[None]] = set()
            for n in range(int(rate * seconds)):
                delay = begin + n / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                envelope = webhook(n)
                sent[envelope.id] = time.time()
                task = asyncio.create_task(runtime.publish_envelope(envelope))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)
            while await runtime.pool.fetchval("SELECT count(*) FROM processed_events") < len(sent):
                await asyncio.sleep(0.1)
            cpu = system.split(before, system.processes(), process.pid)
            busy = round(system.busy()[0] - busy_before[0], 2)
            rows = await runtime.pool.fetch("SELECT id, extract(epoch FROM processed_at) AS at FROM processed_events")
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=30)
            for each in processes:
                _stop(each)
        counted = min(sent.values()) + WARM_UP
        delays = sorted((float(r["at"]) - sent[r["id"]]) * 1000 for r in rows if sent.get(r["id"], 0) >= counted)
        return {
            "rate": rate,
            "workers": workers,
            "messages": len(delays),
            "p50_ms": round(delays[len(delays) // 2], 2),
            "p99_ms": round(delays[int(len(delays) * 0.99)], 2),
            "max_ms": round(delays[-1], 2),
            "cpu_s": cpu,
            "box_busy_s": busy,
        }
    finally:
        await runtime.stop()


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[%s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-GitHub-Event"] = "pull_request"
wrk.headers["X-Hub-Signature-256"] = "%s"
local counter = 0
request = function()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = string.format("%%d-%%d-%%d", os.time(), math.random(1, 1000000000), counter)
  return wrk.format(nil, "/webhooks/github")
end
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ms(output: str, label: str) -> float:
    match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


async def ingress(settings: Settings, env: dict[str, str], seconds: int, connections: int) -> dict[str, Any]:
    """wrk (one thread, as the peers' ingress bench) against one ingress process: signed ~1 KB
    GitHub webhooks, a new delivery id each; every 202 means the broker confirmed the publish."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    runtime = await prepared(settings)
    await runtime.stop()
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "ingress"],
        env={**env, "IW_HTTP_HOST": "127.0.0.1", "IW_HTTP_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    body = orjson.dumps(pr_payload(1))
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    try:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the broker connection and the topology
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(WRK_SCRIPT % (body.decode(), signature))
        url = f"http://127.0.0.1:{port}"
        subprocess.run(
            ["wrk", "-t1", f"-c{connections}", "-d2s", "-s", script.name, url], capture_output=True, check=False
        )
        before, busy_before = system.processes(), system.busy()
        run = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=False,
        )
        after = system.processes()
        output = run.stdout
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        return {
            "rps": round(rate, 1),
            "p50_ms": _ms(output, "50"),
            "p99_ms": _ms(output, "99"),
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "cpu_s": system.split(before, after, process.pid),
            "box_busy_s": round(system.busy()[0] - busy_before[0], 2),
        }
    finally:
        _stop(process)  # type: ignore[arg-type]
