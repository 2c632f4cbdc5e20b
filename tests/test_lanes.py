"""Lanes: a team over its rate takes the bulk lane, so another team's webhooks never wait behind
its backlog; a key's events stay in order across the switch, both ways."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import structlog
from prometheus_client import REGISTRY

from tests.conftest import INSTALLATION_ID, eventually, pull_request_payload, queue_depth, signed_github
from tests.fakes.github import FakeGitHubState
from tests.helpers import publish_with_headers
from worker.core.settings import Settings
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

QUIET_INSTALLATION = 5151
RATE, BURST = 5, 10


@pytest.fixture
def settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("IW_TENANT_RATE", str(RATE))  # lanes on (the tests' environment turns them off)
    monkeypatch.setenv("IW_TENANT_BURST", str(BURST))
    monkeypatch.setenv("IW_FENCE_TIMEOUT", "2")
    return Settings()


@pytest.fixture
async def teams(runtime: Runtime, github: FakeGitHubState) -> None:
    github.installations[QUIET_INSTALLATION] = [{"id": 9101, "full_name": "quiet/app", "private": True}]
    for team, installation in (("team-loud", INSTALLATION_ID), ("team-quiet", QUIET_INSTALLATION)):
        # no comments on the pull requests: only the webhooks are counted here
        await install(runtime, InstallRequest("github", team, {"installationId": installation, "taskComments": False}))


def update(version: int, installation: int = INSTALLATION_ID, number: int = 7) -> dict[str, Any]:
    """Update `version` of one pull request (later ones are newer)."""
    return pull_request_payload(
        action="synchronize",
        pr_id=900_000 + number,
        number=number,
        title=f"Fixes ABC-{number}: v{version}",
        updated_at=f"2026-11-20T10:{version // 60:02d}:{version % 60:02d}Z",
        installation_id=installation,
    )


async def send(ingress: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    body, headers = signed_github("pull_request", payload)
    response = await ingress.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 202, response.text


async def test_a_team_over_its_rate_takes_the_bulk_lane_and_its_pull_request_stays_in_order(
    runtime: Runtime, ingress: httpx.AsyncClient, teams: None
) -> None:
    loud = 40
    for version in range(loud):  # one pull request's updates, faster than the rate
        await send(ingress, update(version))
    await send(ingress, update(0, QUIET_INSTALLATION, number=3))  # another team, meanwhile
    topology = runtime.topology
    # the loud team's first BURST on the normal lane, then a fence in each normal shard, the rest in bulk
    assert await queue_depth(runtime, topology.queues("github", bulk=True)) == loud - BURST
    normal_shards = len(topology.queues("github"))
    assert await queue_depth(runtime, topology.queues("github")) == BURST + normal_shards + 1

    with structlog.testing.capture_logs() as logged:
        worker = Worker(runtime)
        await worker.start()
        try:
            await eventually(
                lambda: runtime.pool.fetchval("SELECT count(*) = $1 FROM processed_events", loud + 1), timeout=30
            )
            await worker.wait_idle()
        finally:
            await worker.stop()

    stored = await runtime.pool.fetchval(
        "SELECT title FROM github_pull_requests WHERE team_id = 'team-loud' AND number = 7"
    )
    assert stored == f"Fixes ABC-7: v{loud - 1}"  # the newest update won
    assert not [line for line in logged if line["event"] == "older pull_request event ignored"]  # none ran late
    assert await runtime.pool.fetchval("SELECT count(*) FROM lane_fences") == normal_shards  # kept for a takeover
    assert await queue_depth(runtime, [*topology.queues("github"), *topology.queues("github", bulk=True)]) == 0


async def test_back_under_its_rate_the_team_returns_to_the_normal_lane_behind_a_fence(
    runtime: Runtime, ingress: httpx.AsyncClient, teams: None, worker: Worker
) -> None:
    timeouts = REGISTRY.get_sample_value("iw_fence_timeouts_total", {"type": "github"}) or 0.0
    for version in range(BURST + 5):
        await send(ingress, update(version))
    await eventually(lambda: runtime.pool.fetchval("SELECT count(*) = $1 FROM processed_events", BURST + 5))
    switched = REGISTRY.get_sample_value("iw_lane_switches_total", {"type": "github", "lane": "normal"}) or 0.0
    clock = ingress._transport.app.lanes  # type: ignore[attr-defined]
    for team in clock._teams.values():  # the bucket full again, as after BURST / RATE quiet seconds
        team.refilled -= BURST / RATE
    await send(ingress, update(BURST + 5))
    assert REGISTRY.get_sample_value("iw_lane_switches_total", {"type": "github", "lane": "normal"}) == switched + 1
    await eventually(lambda: runtime.pool.fetchval("SELECT count(*) = $1 FROM processed_events", BURST + 6))
    stored = await runtime.pool.fetchval("SELECT title FROM github_pull_requests WHERE number = 7")
    assert stored == f"Fixes ABC-7: v{BURST + 5}"
    bulk_shards = len(runtime.topology.queues("github", bulk=True))
    # the fences of both switches: one per shard of the lane left
    await eventually(
        lambda: runtime.pool.fetchval(
            "SELECT count(*) = $1 FROM lane_fences", len(runtime.topology.queues("github")) + bulk_shards
        )
    )
    assert (REGISTRY.get_sample_value("iw_fence_timeouts_total", {"type": "github"}) or 0.0) == timeouts  # fenced


async def test_a_message_whose_fence_never_comes_runs_after_the_timeout(
    runtime: Runtime, teams: None, worker: Worker
) -> None:
    timeouts = REGISTRY.get_sample_value("iw_fence_timeouts_total", {"type": "github"}) or 0.0
    await publish_with_headers(runtime, update(1), {"iw-lane": "gone-ingress:3"})
    await eventually(lambda: runtime.pool.fetchval("SELECT count(*) = 1 FROM processed_events"), timeout=15)
    assert REGISTRY.get_sample_value("iw_fence_timeouts_total", {"type": "github"}) == timeouts + 1
