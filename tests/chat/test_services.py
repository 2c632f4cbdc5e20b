"""The services runner (worker/runtime/services.py) with the Mattermost listener: one live listener per
integration across worker processes, handed over when its holder dies, stopped at once when the
lease connection breaks, following uninstalls and reconfigurations."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

import httpx

from tests.chat.conftest import link_token_in, listener_holder, spawn_worker
from tests.conftest import TEAM, eventually
from tests.fakes import mattermost as fake_mattermost
from tests.fakes.mattermost import FakeMattermostState, posted_event
from worker.cli.serve import create_app
from worker.platform.install import InstallRequest, install, uninstall
from worker.runtime.runtime import Runtime
from worker.runtime.services import ServiceRunner


async def tried_the_lease(runtime: Runtime, pid: int) -> bool:
    """Whether the worker process `pid` has asked for a service lease (and runs none)."""
    query = await runtime.pool.fetchval(
        "SELECT query FROM pg_stat_activity WHERE application_name = $1", f"integration-worker/services/{pid}"
    )
    return query is not None and "pg_try_advisory_lock" in query


async def test_two_worker_processes_hold_one_listener_and_killing_the_holder_moves_it(
    runtime: Runtime, mattermost: FakeMattermostState, mattermost_integration: Any, env: dict[str, str]
) -> None:
    workers = [spawn_worker(env), spawn_worker(env)]
    try:
        await eventually(lambda: mattermost.connected == 1, timeout=30)
        holder = await eventually(lambda: listener_holder(runtime, mattermost_integration))
        holder_pid = int(holder[1].rsplit("/", 1)[1])
        assert holder_pid in {w.pid for w in workers}
        other = next(w.pid for w in workers if w.pid != holder_pid)
        await eventually(lambda: tried_the_lease(runtime, other))  # the other worker tried, and was refused
        assert mattermost.connected == 1 and mattermost.connects == 1 and mattermost.max_concurrent == 1

        dead, survivor = sorted(workers, key=lambda w: w.pid != holder_pid)
        killed = time.monotonic()
        dead.kill()
        dead.wait(timeout=10)
        await eventually(lambda: mattermost.connects == 2 and mattermost.connected == 1, timeout=15)
        takeover = time.monotonic() - killed
        new_holder = await eventually(lambda: listener_holder(runtime, mattermost_integration))
        assert new_holder[1].endswith(f"/{survivor.pid}")
        assert mattermost.max_concurrent == 1
        assert takeover < 5, f"takeover took {takeover:.2f}s"
        print(f"listener takeover after SIGKILL: {takeover:.2f}s")

        # The survivor's listener works: a direct message gets its association link.
        mattermost.broadcast(posted_event(message="hi", channel_type="D", channel_id="dm00000000000000000000000a"))
        post = (await eventually(lambda: mattermost.posts, timeout=15))[0]
        assert link_token_in(post["message"])
    finally:
        for process in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        output = ""
        for process in workers:
            with contextlib.suppress(Exception):
                output += process.communicate(timeout=15)[0] or ""
            if process.poll() is None:
                process.kill()
    assert "service started" in output and "mattermost websocket connected" in output
    assert fake_mattermost.TOKEN not in output and env["IW_SIGNING_KEY"] not in output  # no secret in the logs


async def test_a_broken_lease_connection_stops_the_listener_at_once_and_it_comes_back(
    runtime: Runtime, mattermost: FakeMattermostState, mattermost_integration: Any, services: ServiceRunner
) -> None:
    await eventually(lambda: mattermost.connected == 1)
    holder = await eventually(lambda: listener_holder(runtime, mattermost_integration))
    assert holder[1] == f"integration-worker/services/{os.getpid()}"

    cut = time.monotonic()
    await runtime.pool.execute("SELECT pg_terminate_backend($1)", holder[0])

    await eventually(lambda: mattermost.connected == 0, timeout=5)
    stopped_after = time.monotonic() - cut
    assert stopped_after < 1.0, f"stopped after {stopped_after:.2f}s"
    await eventually(lambda: mattermost.connected == 1 and mattermost.connects == 2)
    assert services.running() == [(mattermost_integration.id, "listener")]
    assert mattermost.max_concurrent == 1


async def test_the_listener_follows_reconfiguration_deactivation_and_uninstall(
    runtime: Runtime,
    mattermost: FakeMattermostState,
    mattermost_integration: Any,
    services: ServiceRunner,
    fake_mattermost_server: tuple[FakeMattermostState, str],
) -> None:
    await eventually(lambda: mattermost.connected == 1)

    await install(  # a new token: the listener restarts with it
        runtime,
        InstallRequest("mattermost", TEAM, {"url": fake_mattermost_server[1], "token": fake_mattermost.TOKEN}),
    )
    await eventually(lambda: mattermost.connects == 2 and mattermost.connected == 1)

    await runtime.pool.execute("UPDATE integrations SET status = 'suspended', updated_at = now()")
    await eventually(lambda: mattermost.connected == 0)
    assert services.running() == []
    assert await listener_holder(runtime, mattermost_integration) is None  # the lease is released

    await runtime.pool.execute("UPDATE integrations SET status = 'active', updated_at = now()")
    await eventually(lambda: mattermost.connected == 1)
    await uninstall(runtime, mattermost_integration.id, TEAM)
    await eventually(lambda: mattermost.connected == 0)
    assert services.running() == []


async def test_the_listener_reconnects_when_the_server_drops_it(
    runtime: Runtime, mattermost: FakeMattermostState, mattermost_integration: Any, services: ServiceRunner
) -> None:
    await eventually(lambda: mattermost.connected == 1)

    mattermost.close_all()

    await eventually(lambda: mattermost.connects == 2 and mattermost.connected == 1)


async def test_uninstalling_over_the_admin_api_stops_the_listener(
    runtime: Runtime, mattermost: FakeMattermostState, mattermost_integration: Any, services: ServiceRunner
) -> None:
    await eventually(lambda: mattermost.connected == 1)
    app = create_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://ingress",
        headers={"Authorization": f"Bearer {runtime.settings.admin_token.get_secret_value()}"},  # type: ignore[union-attr]
    ) as admin:
        response = await admin.delete(f"/integrations/{mattermost_integration.id}", params={"team_id": TEAM})

    assert response.status_code in (200, 204), response.text
    await eventually(lambda: mattermost.connected == 0)
    assert services.running() == []
    assert await runtime.pool.fetchval("SELECT count(*) FROM integrations WHERE type = 'mattermost'") == 0
