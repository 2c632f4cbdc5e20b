"""Many workers on one backlog whose keys collide: the events of each key interleaved with everyone
else's, as a provider sends them. Worker processes come and go (one killed with SIGKILL, one
added) while they drain it: each key's versions are applied in order, none lost, none twice."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import AsyncIterator

import httpx
import pytest

from schemas.envelope import Envelope
from tests.conftest import eventually, queue_consumers, queue_depth, teardown
from tests.helpers import spawn_worker
from tests.support.probe import PROBE_REGISTRY
from worker.core.settings import Settings
from worker.platform import attach
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.sdk import Registry

TEAM = "team-scale"
KEYS = 60
VERSIONS = 150  # each key's updates; 9,000 events
SHARDS = 6


@pytest.fixture
async def scaled(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Runtime, dict[str, str]]]:
    extra = {
        "IW_REGISTRY": "tests.support.probe:PROBE_REGISTRY",
        "IW_TYPE_SHARDS": json.dumps({"probe": SHARDS}),
        "IW_LOG_LEVEL": "WARNING",
    }
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    runtime = attach(Runtime(Settings(), PROBE_REGISTRY))
    await runtime.start()
    await install(runtime, InstallRequest("probe", TEAM, {}))
    try:
        yield runtime, {**env, **extra}
    finally:
        await teardown(runtime)


def versioned(key: int, version: int) -> Envelope:
    return Envelope(
        id=f"v:{key}:{version}",
        type="probe",
        kind="command",
        name="versioned",
        team_id=TEAM,
        payload={"key": f"k{key}", "version": version, "sleep": 0.02},
    )


async def backlog(runtime: Runtime) -> int:
    """Every key's versions, interleaved with the other keys' (version by version)."""
    envelopes = [versioned(k, v) for v in range(1, VERSIONS + 1) for k in range(KEYS)]
    for start in range(0, len(envelopes), 2000):
        outcomes = await runtime.broker.publish_many([runtime.outgoing(e) for e in envelopes[start : start + 2000]])
        assert not any(outcomes), outcomes
    return len(envelopes)


async def applied(runtime: Runtime) -> int:
    return int(await runtime.pool.fetchval("SELECT count(*) FROM probe_applied"))


def stop(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


async def test_workers_that_come_and_go_keep_every_keys_order_and_lose_nothing(
    scaled: tuple[Runtime, dict[str, str]],
) -> None:
    runtime, env = scaled
    total = await backlog(runtime)
    registry: Registry = runtime.registry
    assert registry.key_of(versioned(1, 1)) == f"t:{TEAM}|k1"
    workers = [spawn_worker(env, "--types", "probe") for _ in range(3)]
    added: subprocess.Popen[str] | None = None
    try:
        await eventually(lambda: _at_least(runtime, total // 4), timeout=120)
        killed = workers.pop(0)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        killed_pid = str(killed.pid)
        at_kill = await applied(runtime)
        await eventually(lambda: _at_least(runtime, at_kill + total // 5), timeout=120)
        added = spawn_worker(env, "--types", "probe")
        await eventually(lambda: _at_least(runtime, total), timeout=180)
    finally:
        codes = [stop(w) for w in [*workers, *([added] if added else [])]]
    assert codes == [0] * len(codes)  # SIGTERM: stopped cleanly

    rows = await runtime.pool.fetch("SELECT key, version, worker FROM probe_applied")
    assert len(rows) == total == len({(r["key"], r["version"]) for r in rows})  # all of them, each once
    assert await runtime.pool.fetchval("SELECT count(*) FROM probe_out_of_order") == 0  # in order, every key
    assert await runtime.pool.fetchval("SELECT count(*) FROM processed_events") == total
    assert await queue_depth(runtime, runtime.topology.parked) == 0  # nothing refused as done twice
    assert await queue_depth(runtime, runtime.topology.queues("probe")) == 0
    by_worker = {r["worker"].rsplit("/", 1)[-1] for r in rows}
    assert killed_pid in by_worker  # the killed one had done some; its shards were taken over
    assert added is not None and str(added.pid) in by_worker  # the one added took a share
    versions = await runtime.pool.fetch("SELECT key, version FROM probe_versions")
    assert {r["key"]: r["version"] for r in versions} == {f"k{k}": VERSIONS for k in range(KEYS)}


async def test_a_worker_joining_takes_its_share_and_one_leaving_hands_its_shards_back(
    scaled: tuple[Runtime, dict[str, str]],
) -> None:
    runtime, env = scaled
    queues = runtime.topology.queues("probe")
    ports = [_free_port(), _free_port()]
    first = spawn_worker({**env, "IW_WORKER_METRICS_PORT": str(ports[0])}, "--types", "probe")
    second: subprocess.Popen[str] | None = None
    try:
        await eventually(lambda: _owns(ports[0], SHARDS), timeout=60)
        second = spawn_worker({**env, "IW_WORKER_METRICS_PORT": str(ports[1])}, "--types", "probe")
        await eventually(lambda: _owns(ports[1], SHARDS // 2), timeout=60)  # its share
        await eventually(lambda: _owns(ports[0], SHARDS // 2), timeout=30)  # handed over by the first
        await eventually(lambda: _consumed(runtime, queues, SHARDS), timeout=30)  # one consumer a shard
        assert stop(second) == 0  # it leaves at once and hands its shards back
        await eventually(lambda: _owns(ports[0], SHARDS), timeout=30)
        await eventually(lambda: _consumed(runtime, queues, SHARDS), timeout=30)
        total = 200
        outcomes = await runtime.broker.publish_many([runtime.outgoing(versioned(k, 1)) for k in range(total)])
        assert not any(outcomes)
        await eventually(lambda: _at_least(runtime, total), timeout=60)
    finally:
        for process in (first, second):
            if process is not None:
                stop(process)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _owns(port: int, count: int) -> bool:
    return await _owned(port) == count


async def _owned(port: int) -> int | None:
    """`iw_shards_owned{type="probe"}` of the worker serving metrics on `port`."""
    try:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=2)).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith('iw_shards_owned{type="probe"}'):
            return int(float(line.split()[-1]))
    return None


async def _at_least(runtime: Runtime, count: int) -> bool:
    return await applied(runtime) >= count


async def _consumed(runtime: Runtime, queues: list[str], count: int) -> bool:
    return await queue_consumers(runtime, queues) == count
