"""Benchmarks of the worker, the ingress and the latency, on this machine's RabbitMQ and
PostgreSQL, optionally interleaved with plain peers in the same run (ratios hold where absolute
figures drift). See bench/README.md.

    python bench/run.py                                  # the project alone
    python bench/run.py --peers ~/peers                  # with the plain peers, interleaved, and ratios
    python bench/run.py --updates 1 --skip-ingress       # the worst case of the worker
    python bench/run.py --skip-ingress --skip-latency --profile /tmp/worker.txt   # py-spy
    python bench/run.py --contended --workers 1,2,3      # many workers on a backlog whose keys collide
    python bench/run.py --fairness --workers 2           # a quiet team's latency beside a burst
    python bench/run.py --skip-worker --skip-ingress --latency-workers 2

Everything of the project runs in its own schema and broker prefix, removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import ours, peers, scale
from integrations.registry import REGISTRY
from worker.core.settings import Settings
from worker.platform import attach
from worker.runtime import topology
from worker.runtime.runtime import Runtime

WORKER_PEERS = ("aiopika", "aiopika_batch")


def _median(runs: list[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def _line(name: str, runs: list[dict[str, Any]], *keys: str) -> str:
    return f"  {name:<28}" + "  ".join(f"{key} {_median(runs, key):>10,.1f}" for key in keys)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=Path, help="the peers' folder (set up as its README says)")
    parser.add_argument("--runs", type=int, default=1, help="rounds; each runs every benchmark once")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--updates", type=int, default=10, help="events per pull request (1: the worst case)")
    parser.add_argument("--seconds", type=int, default=15, help="length of an ingress run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000.0, help="webhooks/s of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--profile", help="record the worker with py-spy into this file (.json: speedscope)")
    parser.add_argument("--skip-worker", action="store_true")
    parser.add_argument("--skip-ingress", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--workers", default="1,2,3", help="worker processes of --contended (a list) and --fairness")
    parser.add_argument("--contended", action="store_true", help="only: drain interleaved backlogs with --workers")
    parser.add_argument("--prs", type=int, default=1000, help="pull requests of the contended backlog")
    parser.add_argument("--fairness", action="store_true", help="only: a quiet team's latency beside a burst")
    parser.add_argument("--burst", type=int, default=50_000, help="events of the bursting team (--fairness)")
    parser.add_argument("--quiet-rate", type=float, default=20.0, help="events/s of the quiet team (--fairness)")
    parser.add_argument("--latency-workers", type=int, default=1, help="worker processes of the latency run")
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:8]
    env = ours.environment(f"bench_{suffix}", f"bench{suffix}")
    os.environ.update({k: v for k, v in env.items() if k.startswith("IW_")})
    settings = Settings()
    figures: dict[str, list[dict[str, Any]]] = {}

    def record(name: str, result: dict[str, Any]) -> None:
        figures.setdefault(name, []).append(result)
        print(f"{name}: {json.dumps(result)}", flush=True)

    try:
        if args.contended or args.fairness:
            await _scaling(args, settings, env, record)
            return
        for _ in range(args.runs):
            if not args.skip_worker:
                record("worker", await ours.worker(settings, env, args.events, args.updates, args.profile))
                if args.peers:
                    for peer in WORKER_PEERS:
                        record(peer, peers.consumer(args.peers, peer, events=args.events, rate=0, seconds=0))
            if not args.skip_latency:
                profile = args.profile if args.skip_worker else None
                record(
                    "latency",
                    await ours.latency(
                        settings, env, args.rate, args.latency_seconds, profile, workers=args.latency_workers
                    ),
                )
                if args.peers:
                    figures_ = peers.consumer(
                        args.peers, "aiopika_batch", events=2000, rate=args.rate, seconds=args.latency_seconds
                    )
                    record("latency aiopika_batch", figures_.get("latency", {}))
            if not args.skip_ingress:
                record("ingress", await ours.ingress(settings, env, args.seconds, args.connections))
                if args.peers:
                    record(
                        "ingress starlette",
                        peers.ingress(args.peers, seconds=args.seconds, connections=args.connections),
                    )
    finally:
        await _remove(settings)
    _summary(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


async def _scaling(args: argparse.Namespace, settings: Settings, env: dict[str, str], record: Any) -> None:
    counts = [int(n) for n in args.workers.split(",")]
    for _ in range(args.runs):
        if args.contended:
            log = f"/tmp/bench-contended-{os.getpid()}.log"
            found = await scale.contended(settings, env, args.events, args.prs, counts, log)
            for name, figures_ in found.items():
                record(name, figures_)
            ratio = found[f"contended_{counts[-1]}"]["events_s"] / found[f"uncontended_{counts[-1]}"]["events_s"]
            print(f"  contended/uncontended with {counts[-1]} workers: {ratio:.2f}x", flush=True)
            if len(counts) > 1:
                two_over_one = found[f"contended_{counts[1]}"]["events_s"] / found[f"contended_{counts[0]}"]["events_s"]
                print(f"  contended, {counts[1]} workers / {counts[0]}: {two_over_one:.2f}x", flush=True)
        if args.fairness:
            record("fairness", await scale.fairness(settings, env, args.burst, args.quiet_rate, counts[-1]))


def _summary(figures: dict[str, list[dict[str, Any]]]) -> None:
    print("\nmedians")
    if "worker" in figures:
        print(_line("worker", figures["worker"], "events_s", "cpu_us_per_event"))
        for peer in WORKER_PEERS:
            if peer in figures:
                ratio = _median(figures["worker"], "events_s") / _median(figures[peer], "events_s")
                print(_line(peer, figures[peer], "events_s", "cpu_us_per_event") + f"   worker/{peer} {ratio:.2f}x")
    if "latency" in figures:
        print(_line("latency (accepted->committed)", figures["latency"], "p50_ms", "p99_ms"))
        if "latency aiopika_batch" in figures:
            print(_line("latency aiopika_batch", figures["latency aiopika_batch"], "p50_ms", "p99_ms"))
    if "ingress" in figures:
        print(_line("ingress", figures["ingress"], "rps", "p99_ms"))
        if "ingress starlette" in figures:
            ratio = _median(figures["ingress"], "rps") / _median(figures["ingress starlette"], "rps")
            print(_line("ingress starlette", figures["ingress starlette"], "rps", "p99_ms") + f"   ratio {ratio:.2f}x")


async def _remove(settings: Settings) -> None:
    runtime = attach(Runtime(settings, REGISTRY))
    await runtime.http.aclose()
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        await topology.delete(await connection.channel(), runtime.topology)
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
