"""The plain peers (a folder of plain consumers and a plain ingress; bench/README.md says which
and how to set them up: their own .venv, the `bench` database, wrk), run one at a time between
the project's own runs, on quorum queues as the project's queues are (PEER_QUORUM=1)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any


def _python(folder: Path) -> str:
    python = folder / ".venv" / "bin" / "python"
    if not python.is_file():
        raise SystemExit(f"{folder}: no .venv (see its README: python3 -m venv .venv && .venv/bin/pip install ...)")
    return str(python)


def _last_json(output: str) -> dict[str, Any]:
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"a peer printed no result:\n{output[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def consumer(folder: Path, peer: str, *, events: int, rate: float, seconds: float) -> dict[str, Any]:
    """One run of `bench.py PEER`: consume figures (and latency at `rate`, unless 0)."""
    (folder / "results").mkdir(exist_ok=True)
    run = subprocess.run(
        [
            _python(folder),
            "bench.py",
            peer,
            "--runs",
            "1",
            "--n",
            str(events),
            "--rate",
            str(rate),
            "--secs",
            str(seconds),
        ],
        cwd=folder,
        env={**os.environ, "PEER_QUORUM": "1"},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    result = _last_json(run.stdout)
    consume = result["consume"]
    cpu = result["cpu_s"]
    figures = {
        "events_s": consume.get("wall_msg_s"),
        "wall_s": consume.get("wall_s"),
        "cpu_us_per_event": round(cpu["consumer"] / events * 1e6, 1),
        "cpu_s": {"process": cpu["consumer"], "postgres": cpu["postgres"], "rabbitmq": cpu["rabbitmq"]},
    }
    if "latency_ms" in result:
        figures["latency"] = {"p50_ms": result["latency_ms"]["p50"], "p99_ms": result["latency_ms"]["p99"]}
    return figures


def ingress(folder: Path, *, seconds: int, connections: int) -> dict[str, Any]:
    """One run of the peers' Starlette + aio-pika ingress, publishing with confirms."""
    (folder / "results").mkdir(exist_ok=True)
    run = subprocess.run(
        [_python(folder), "ingress_bench.py", "--runs", "1", "--secs", str(seconds), "--conns", str(connections)],
        cwd=folder,
        env={**os.environ, "PEER_QUORUM": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    for line in run.stdout.splitlines():
        if line.startswith("{") and json.loads(line).get("mode") == "publish":
            result = json.loads(line)
            return {"rps": result["rps"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"]}
    raise SystemExit(f"the peers' ingress bench printed no result:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
