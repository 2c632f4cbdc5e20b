"""Benchmarks of the ingress and the worker, on this machine's RabbitMQ and PostgreSQL.

    python bench/run.py                      # both
    python bench/run.py --skip-worker        # ingress only
    python bench/run.py --events 50000 --skip-ingress

(1) Ingress: `integration-worker ingress` (one process) under wrk: signed ~1 KB GitHub
    webhooks, a new X-GitHub-Delivery each, N connections; every 202 means the broker
    confirmed the publish. Prints webhooks/s, p50, p99, and checks the queue holds them all.
(2) Worker: N GitHub pull_request webhooks preloaded on the github queue (--updates per pull
    request: opened, then synchronize events, newer each time); one `integration-worker worker`
    process; the clock runs from its start until every event is committed (PR rows, inbox ids,
    and a task.status_change event whenever a pull request's magic words give a new status).
    Prints events/s and the worker's CPU per event. --updates 1 is the worst case: every
    event a new pull request that publishes an event.

Everything runs in its own schema and broker prefix, removed afterwards.
"""

from __future__ import annotations

import argparse
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

import aio_pika
import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integrations.registry import REGISTRY
from schemas.envelope import Envelope, dumps_envelope
from worker.core.settings import Settings
from worker.platform import attach
from worker.runtime import topology as broker_module
from worker.runtime.runtime import Runtime

SECRET = "bench-webhook-secret"
TEAM = "bench-team"
INSTALLATION = 777


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(schema: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "IW_DATABASE_URL": os.environ.get("IW_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        "IW_DATABASE_SCHEMA": schema,
        "IW_BROKER_PREFIX": prefix,
        "IW_GITHUB_WEBHOOK_SECRET": SECRET,
        "IW_LOG_FORMAT": "json",
        "IW_WORKER_METRICS_PORT": "0",
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pr_payload(n: int, updates: int = 1) -> dict[str, object]:
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
            "updated_at": f"2026-11-20T10:{version // 60:02d}:{version % 60:02d}Z",
        },
        "repository": {"id": 9001, "full_name": "acme/app", "private": True},
        "installation": {"id": INSTALLATION},
        "sender": {"login": "octocat", "id": 1},
    }


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


def _percentile(output: str, label: str) -> float:
    match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


async def bench_ingress(settings: Settings, env: dict[str, str], seconds: int, connections: int) -> None:
    if shutil.which("wrk") is None:
        print("ingress: wrk is not installed (apt-get install wrk); skipped")
        return
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
                time.sleep(0.1)
        await asyncio.sleep(1.0)  # broker connection and topology
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(WRK_SCRIPT % (body.decode(), signature))
        warm = subprocess.run(
            ["wrk", "-t2", "-c16", "-d2s", "-s", script.name, f"http://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if "Non-2xx" in warm.stdout:
            print(warm.stdout)
            raise SystemExit("ingress answered non-2xx during warm-up")
        run = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        output = run.stdout
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        errors = re.search(r"Socket errors: (.*)", output)
        print(
            f"ingress: {rate:,.0f} webhooks/s, p50 {_percentile(output, '50'):.1f} ms, p99 {_percentile(output, '99'):.1f} ms"
            f" ({connections} connections, {seconds} s, {len(body)} B bodies, publisher confirms)"
        )
        print(
            f"         non-2xx: {non_2xx.group(1) if non_2xx else 0}; socket errors: {errors.group(1) if errors else 'none'}"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


async def bench_worker(
    settings: Settings, env: dict[str, str], events: int, concurrency: int | None, updates: int, profile: str | None
) -> None:
    runtime = attach(Runtime(settings, REGISTRY))
    await runtime.start()
    try:
        await runtime.pool.execute(
            "INSERT INTO integrations (team_id, external_team_id, name, type, config)"
            " VALUES ($1, $2, 'GitHub', 'github', $3)",
            TEAM,
            str(INSTALLATION),
            {"installationId": INSTALLATION},
        )
        # A consumer of the result events, as the platform would have.
        channel = await runtime.broker.channel(confirms=False)
        results = await channel.declare_queue(f"{settings.broker_prefix}.bench-results", durable=True)
        await results.bind(runtime.topology.results, "task.#")
        started = time.perf_counter()
        batch = []
        for n in range(events):
            envelope = Envelope(
                id=f"github:{uuid.uuid4()}",
                type="github",
                kind="webhook",
                name="pull_request",
                external_team_id=str(INSTALLATION),
                payload=pr_payload(n, updates),
            )
            batch.append(
                runtime.broker.publish(
                    runtime.topology.incoming, envelope.routing_key, dumps_envelope(envelope), message_id=envelope.id
                )
            )
            if len(batch) == 1000:
                await asyncio.gather(*batch)
                batch = []
        await asyncio.gather(*batch)
        print(
            f"worker: {events:,} pull_request webhooks preloaded ({updates} per pull request)"
            f" in {time.perf_counter() - started:.1f} s"
        )
        args = [sys.executable, "-m", "worker.cli", "worker", "--types", "github"]
        if concurrency:
            args += ["--concurrency", str(concurrency)]
        started = time.perf_counter()
        process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        profiler = None
        if profile:  # py-spy (pip install py-spy): raw collapsed stacks, or speedscope if the name says so
            fmt = "speedscope" if profile.endswith(".json") else "raw"
            profiler = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "-p",
                    str(process.pid),
                    "-r",
                    "250",
                    "--format",
                    fmt,
                    "-o",
                    profile,
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        first: float | None = None
        try:
            while True:
                done = await runtime.pool.fetchval("SELECT count(*) FROM processed_events")
                if done and first is None:
                    first = time.perf_counter()
                if done >= events:
                    break
                if process.poll() is not None:
                    raise SystemExit("the worker exited")
                await asyncio.sleep(0.2)  # count(*) scans the inbox: poll gently
            elapsed = time.perf_counter() - started
            cpu = _cpu_seconds(process.pid)
            while await runtime.pool.fetchval("SELECT count(*) FROM outbox"):  # events are published after commit
                await asyncio.sleep(0.05)
            rows = await runtime.pool.fetchval("SELECT count(*) FROM github_pull_requests")
            declared = await channel.declare_queue(f"{settings.broker_prefix}.bench-results", durable=True)
            status_events = declared.declaration_result.message_count
            print(
                f"worker: {events / elapsed:,.0f} events/s end to end ({events:,} in {elapsed:.1f} s from process start;"
                f" {events / (elapsed - ((first or started) - started)):,.0f}/s from the first commit)"
            )
            print(
                f"        rows: {rows:,} pull requests, {done:,} inbox ids, {status_events:,} task.status_change events"
            )
            print(f"        worker CPU {cpu:.1f} s: {cpu / events * 1e6:.0f} us per event (start-up included)")
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=30)
                print(f"        profile of the worker written to {profile}")
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        await results.delete(if_unused=False, if_empty=False)
        await channel.close()
    finally:
        await runtime.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument(
        "--updates",
        type=int,
        default=10,
        help="events per pull request (1: every event a new pull request, each publishing a status event)",
    )
    parser.add_argument("--profile", help="record the worker with py-spy into this file (.json: speedscope)")
    parser.add_argument("--skip-ingress", action="store_true")
    parser.add_argument("--skip-worker", action="store_true")
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:8]
    schema, prefix = f"bench_{suffix}", f"bench{suffix}"
    env = _env(schema, prefix)
    os.environ.update({k: v for k, v in env.items() if k.startswith("IW_")})
    settings = Settings()
    try:
        if not args.skip_ingress:
            await bench_ingress(settings, env, args.seconds, args.connections)
            await _reset(settings)
        if not args.skip_worker:
            await bench_worker(settings, env, args.events, args.concurrency, args.updates, args.profile)
    finally:
        await _reset(settings)


async def _reset(settings: Settings) -> None:
    runtime = attach(Runtime(settings, REGISTRY))
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        await broker_module.delete(await connection.channel(), runtime.topology)
    await runtime.http.aclose()
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
