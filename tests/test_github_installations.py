"""Installation events keep the integration row and its repositories in step with GitHub."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import INSTALLATION_ID, TEAM, Results, eventually, pull_request_payload, queue_depth, signed_github
from tests.fakes.github import FakeGitHubState
from tests.helpers import cli
from worker.platform.install import InstallError, InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker


async def _send(ingress: httpx.AsyncClient, event: str, payload: dict[str, object]) -> str:
    body, headers = signed_github(event, payload)
    response = await ingress.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 202
    return str(response.json()["id"])


async def _status(runtime: Runtime) -> str:
    return str(await runtime.pool.fetchval("SELECT status FROM integrations WHERE type = 'github'"))


async def test_install_checks_the_installation_and_loads_its_repositories(
    runtime: Runtime, github: FakeGitHubState, results: Results
) -> None:
    record, is_new = await install(runtime, InstallRequest("github", TEAM, {"installationId": str(INSTALLATION_ID)}))

    assert is_new and record.row.external_team_id == str(INSTALLATION_ID)
    repos = await runtime.pool.fetch("SELECT full_name FROM github_repositories ORDER BY full_name")
    assert [r["full_name"] for r in repos] == ["acme/app", "acme/docs"]
    installed = await results.wait_for("integration.installed")
    assert installed[0]["data"]["type"] == "github" and installed[0]["data"]["is_new_install"] is True


async def test_install_of_an_installation_github_does_not_know_is_refused(
    runtime: Runtime, github: FakeGitHubState
) -> None:
    with pytest.raises(InstallError) as refused:
        await install(runtime, InstallRequest("github", TEAM, {"installationId": 999}))
    assert refused.value.status == 422
    assert "no installation 999" in refused.value.message
    assert await runtime.pool.fetchval("SELECT count(*) FROM integrations WHERE type = 'github'") == 0


async def test_install_with_a_bad_config_lists_the_fields(runtime: Runtime, github: FakeGitHubState) -> None:
    with pytest.raises(InstallError) as refused:
        await install(runtime, InstallRequest("github", TEAM, {"installationId": "abc", "token": "x"}))
    assert refused.value.status == 400
    assert set(refused.value.fields) == {"installationId", "token"}


async def test_suspend_skips_events_and_unsuspend_resumes_them(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, results: Results, github_integration: object
) -> None:
    installation = {"id": INSTALLATION_ID, "account": {"login": "acme", "id": 1}}
    await _send(ingress, "installation", {"action": "suspend", "installation": installation})
    await eventually(lambda: _is(runtime, "suspended"))
    changed = await results.wait_for("integration.status_changed")
    assert changed[0]["data"]["status"] == "suspended" and changed[0]["data"]["previous_status"] == "active"

    skipped = await _send(ingress, "pull_request", pull_request_payload())
    await eventually(
        lambda: runtime.pool.fetchval(
            "SELECT 1 FROM integration_logs WHERE key = 'skipped_inactive' AND event_id = $1", skipped
        )
    )
    assert await runtime.pool.fetchval("SELECT count(*) FROM github_pull_requests") == 0

    await _send(ingress, "installation", {"action": "unsuspend", "installation": installation})
    await eventually(lambda: _is(runtime, "active"))
    await _send(ingress, "pull_request", pull_request_payload(updated_at="2026-11-21T00:00:00Z"))
    await eventually(lambda: runtime.pool.fetchval("SELECT count(*) FROM github_pull_requests"))


async def test_deleted_installation_marks_the_integration_uninstalled_and_drops_repositories(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, github_integration: object
) -> None:
    assert await runtime.pool.fetchval("SELECT count(*) FROM github_repositories") == 2
    await _send(ingress, "installation", {"action": "deleted", "installation": {"id": INSTALLATION_ID}})

    await eventually(lambda: _is(runtime, "uninstalled"))
    assert await runtime.pool.fetchval("SELECT count(*) FROM github_repositories") == 0


async def test_repositories_added_and_removed(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, github_integration: object
) -> None:
    await _send(
        ingress,
        "installation_repositories",
        {
            "action": "added",
            "installation": {"id": INSTALLATION_ID},
            "repositories_added": [{"id": 9003, "full_name": "acme/api", "private": True}],
            "repositories_removed": [{"id": 9002, "full_name": "acme/docs"}],
        },
    )

    async def names() -> list[str] | None:
        rows = await runtime.pool.fetch("SELECT full_name FROM github_repositories ORDER BY full_name")
        found = [r["full_name"] for r in rows]
        return found if found == ["acme/api", "acme/app"] else None

    assert await eventually(names) == ["acme/api", "acme/app"]


async def test_events_nobody_handles_are_acknowledged_not_parked(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, github_integration: object, env: dict[str, str]
) -> None:
    for event in ("star", "push", "workflow_run", "check_suite"):
        await _send(ingress, event, {"action": "created", "installation": {"id": INSTALLATION_ID}})

    await eventually(lambda: _queue_empty(runtime))
    await worker.wait_idle()
    assert json.loads(cli(env, "dead", "list", "--json").stdout) == []
    metrics = (await ingress.get("/metrics")).text
    assert 'iw_processed_total{outcome="ignored",type="github"}' in metrics


async def test_events_of_an_installation_no_team_installed_are_parked(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, github_integration: object, env: dict[str, str]
) -> None:
    event_id = await _send(ingress, "pull_request", pull_request_payload(installation_id=31337))

    async def parked() -> list[dict[str, object]]:
        return [p for p in json.loads(cli(env, "dead", "list", "--json").stdout) if p["id"] == event_id]

    found = await eventually(parked, timeout=20, interval=0.3)
    assert "unknown integration" in str(found[0]["error"]) and "31337" in str(found[0]["error"])


async def test_older_pull_request_event_after_a_newer_one_changes_nothing(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, github_integration: object
) -> None:
    await _send(ingress, "pull_request", pull_request_payload(title="New title", updated_at="2026-11-20T12:00:00Z"))
    await eventually(lambda: runtime.pool.fetchval("SELECT title FROM github_pull_requests"))
    late = await _send(
        ingress, "pull_request", pull_request_payload(title="Old title", updated_at="2026-11-20T09:00:00Z")
    )
    await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", late))

    assert await runtime.pool.fetchval("SELECT title FROM github_pull_requests") == "New title"


async def _is(runtime: Runtime, status: str) -> bool:
    return await _status(runtime) == status


async def _queue_empty(runtime: Runtime) -> bool:
    return await queue_depth(runtime, runtime.topology.queues("github")) == 0
