"""Scaling out: several worker processes on one backlog, and one team's burst beside another's
trickle. Real traffic, not the easy case: the updates of a pull request interleaved with every
other pull request's, as GitHub sends them after an outage.

    contended      a backlog of `events` updates of `prs` pull requests, interleaved (update 1 of
                   every pull request, then update 2, ...), drained by 1, 2, 3 worker processes;
                   beside the same number of events of as many different pull requests
                   (uncontended), in the same run. Prints events/s, PostgreSQL deadlocks during
                   the run, transactions tried again, events run out of order.
    fairness       the workers running, team A sends a burst of `burst` events, published as the
                   ingress publishes them (over its rate: the bulk lane); team B sends `rate`
                   events a second while the workers drain A's. Prints B's latency (accepted to
                   committed) and A's throughput while it drains.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import httpx

from bench import system
from bench.ours import INSTALLATION, TEAM, WARM_UP, _free_port, _spawn, _stop, prepared, reset, webhook
from schemas.envelope import Envelope, dumps_envelope
from worker.core.settings import Settings
from worker.runtime.broker import Outgoing
from worker.runtime.lanes import Lanes
from worker.runtime.runtime import Runtime

QUIET_TEAM, QUIET_INSTALLATION = "bench-quiet-team", 778


def contended_backlog(events: int, prs: int) -> list[Envelope]:
    """`events // prs` updates of each of `prs` pull requests, interleaved: update v of every pull
    request before update v + 1 of any."""
    updates = events // prs
    return [webhook(pr * updates + version, updates) for version in range(updates) for pr in range(prs)]


async def _preload(runtime: Runtime, envelopes: list[Envelope], lanes: Lanes | None = None) -> None:
    """Onto the queues; through `lanes` as the ingress would publish them (a team over its rate on
    the bulk lane), else straight onto the normal lane."""
    for start in range(0, len(envelopes), 2000):
        chunk = envelopes[start : start + 2000]
        if lanes is None:
            outgoing = [runtime.outgoing(e) for e in chunk]
        else:
            outgoing = [await _as_ingress(runtime, lanes, e) for e in chunk]
        outcomes = await runtime.broker.publish_many(outgoing)
        if any(outcomes):
            raise SystemExit(f"preload failed: {next(o for o in outcomes if o)}")


async def _as_ingress(runtime: Runtime, lanes: Lanes, envelope: Envelope) -> Outgoing:
    key = runtime.registry.key_of(envelope)
    return await lanes.route(
        envelope.type, envelope.routing_key, dumps_envelope(envelope), message_id=envelope.id, key=key
    )


async def _deadlocks(runtime: Runtime) -> int:
    return int(await runtime.pool.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"))


async def _scrape(ports: list[int], name: str) -> float:
    """The sum of a metric's samples over the workers' /metrics."""
    total = 0.0
    async with httpx.AsyncClient(timeout=5) as http:
        for port in ports:
            try:
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.HTTPError:
                continue
            total += sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))
    return total


def _count_lines(path: str, text: str) -> int:
    with open(path, "rb") as log:
        return sum(text.encode() in line for line in log)


async def drain(
    settings: Settings, env: dict[str, str], envelopes: list[Envelope], workers: int, log: str
) -> dict[str, Any]:
    """Preload `envelopes`, start `workers` worker processes together, time them to the last commit."""
    runtime = await prepared(settings)
    try:
        await reset(runtime)
        await _preload(runtime, envelopes)
        deadlocks = await _deadlocks(runtime)
        ports = [_free_port() for _ in range(workers)]
        worker_env = {**env, "IW_LOG_LEVEL": "INFO", "BENCH_WORKER_LOG": log}
        before, started = system.processes(), time.time()
        processes = [
            _spawn({**worker_env, "IW_WORKER_METRICS_PORT": str(port)}, "worker", "--types", "github") for port in ports
        ]
        try:
            while await runtime.pool.fetchval("SELECT count(*) FROM processed_events") < len(envelopes):
                if any(p.poll() is not None for p in processes):
                    raise SystemExit("a worker exited")
                await asyncio.sleep(0.2)
            last = await runtime.pool.fetchval("SELECT extract(epoch FROM max(processed_at)) FROM processed_events")
            after = system.processes()
            retried = await _scrape(ports, "iw_commit_retries_total{")
            sent_back = await _scrape(ports, 'iw_retried_total{type="github"}')
        finally:
            for process in processes:
                _stop(process)
        wall = float(last) - started
        cpu = system.split(before, after, processes[0].pid)
        return {
            "workers": workers,
            "events": len(envelopes),
            "events_s": round(len(envelopes) / wall, 1),
            "wall_s": round(wall, 2),
            "deadlocks": await _deadlocks(runtime) - deadlocks,
            "commits_tried_again": int(retried),
            "sent_to_retry_queue": int(sent_back),
            "cpu_s": cpu,
        }
    finally:
        await runtime.stop()


async def contended(
    settings: Settings, env: dict[str, str], events: int, prs: int, workers: list[int], log: str
) -> dict[str, Any]:
    """Each worker count on the contended backlog and on an uncontended one, in the same run."""
    figures: dict[str, Any] = {}
    for count in workers:
        open(log, "wb").close()
        run = await drain(settings, env, contended_backlog(events, prs), count, log)
        run["out_of_order"] = _count_lines(log, "older pull_request event ignored")
        figures[f"contended_{count}"] = run
        figures[f"uncontended_{count}"] = await drain(settings, env, [webhook(n) for n in range(events)], count, log)
    return figures


async def fairness(settings: Settings, env: dict[str, str], burst: int, rate: float, workers: int) -> dict[str, Any]:
    """Team A's `burst` on the queues; team B's steady `rate` while the workers drain it."""
    runtime = await prepared(settings, {TEAM: INSTALLATION, QUIET_TEAM: QUIET_INSTALLATION})
    try:
        await reset(runtime)
        lanes = Lanes(settings, runtime.topology, runtime.broker)
        processes = [_spawn(env, "worker", "--types", "github") for _ in range(workers)]
        sent: dict[str, float] = {}
        try:
            while await runtime.pool.fetchval("SELECT count(*) FROM worker_members") < workers:
                await asyncio.sleep(0.1)
            await asyncio.sleep(3 * settings.rebalance_interval + 1)  # the workers have split the shards
            # A's burst from a process of its own, as from an ingress: B's timings are not this loop's
            bursting = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.scale", str(burst), env=env)
            loop = asyncio.get_running_loop()
            begin, n = loop.time(), 0
            started = time.time()
            while (
                await runtime.pool.fetchval("SELECT count(*) FROM github_pull_requests WHERE team_id = $1", TEAM)
                < burst
            ):
                envelope = webhook(burst + n, installation=QUIET_INSTALLATION)
                sent[envelope.id] = time.time()
                await runtime.broker.publish_message(await _as_ingress(runtime, lanes, envelope))
                n += 1
                await asyncio.sleep(max(0.0, begin + n / rate - loop.time()))
            drained = time.time()
            await bursting.wait()
            while await runtime.pool.fetchval("SELECT count(*) FROM processed_events") < burst + len(sent):
                await asyncio.sleep(0.1)
            rows = await runtime.pool.fetch(
                "SELECT id, extract(epoch FROM processed_at) AS at FROM processed_events WHERE id = ANY($1::text[])",
                list(sent),
            )
        finally:
            for process in processes:
                _stop(process)
        delays = sorted((float(r["at"]) - sent[r["id"]]) * 1000 for r in rows)
        warm = min(sent.values()) + WARM_UP
        settled = sorted((float(r["at"]) - sent[r["id"]]) * 1000 for r in rows if sent[r["id"]] >= warm)
        over_time = [
            round(
                max([(float(r["at"]) - sent[r["id"]]) * 1000 for r in rows if int(sent[r["id"]] - started) == s] or [0])
            )
            for s in range(int(drained - started) + 1)
        ]
        return {
            "workers": workers,
            "burst": burst,
            "quiet_team_events": len(delays),
            "quiet_p50_ms": round(delays[len(delays) // 2], 1),
            "quiet_p99_ms": round(delays[int(len(delays) * 0.99)], 1),
            "quiet_max_ms": round(delays[-1], 1),
            "quiet_p99_after_warm_up_ms": round(settled[int(len(settled) * 0.99)], 1) if settled else None,
            "quiet_max_ms_each_second": over_time,
            "burst_events_s": round(burst / (drained - started), 1),
        }
    finally:
        await runtime.stop()


async def _burst(count: int) -> None:
    """`python -m bench.scale COUNT`: team A's burst, published as the ingress publishes it."""
    settings = Settings()
    runtime = await prepared(settings)
    try:
        await _preload(runtime, [webhook(n) for n in range(count)], Lanes(settings, runtime.topology, runtime.broker))
    finally:
        await runtime.stop()


if __name__ == "__main__":
    asyncio.run(_burst(int(sys.argv[1])))
