"""Tools that act as a user (`needs_user_link`): listed and callable only for a user with a link."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from schemas.envelope import Envelope
from tests.conftest import TEAM
from tests.tools.conftest import BrokerCaller
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker


@pytest.fixture
async def probe_integration(runtime: Runtime) -> Any:
    record, _ = await install(runtime, InstallRequest("probe", TEAM, {}, source="test"))
    await runtime.pool.execute(
        """INSERT INTO integration_user_link (user_id, team_id, external_user_id, integration_id, integration_type)
           VALUES ('ada', $1, 'ada@probe', $2, 'probe')""",
        TEAM,
        record.id,
    )
    return record


async def names(service: httpx.AsyncClient, **params: str) -> list[str]:
    response = await service.get("/tools", params={"team_id": TEAM, **params})
    return [t["function"]["name"] for t in response.json()["tools"]]


async def test_a_tool_acting_as_a_user_is_listed_only_for_a_user_with_a_link(
    runtime: Runtime, service: httpx.AsyncClient, probe_integration: Any
) -> None:
    assert await names(service) == []
    assert await names(service, user_id="bob") == []
    assert await names(service, user_id="ada") == ["probe_whoami"]

    await runtime.pool.execute("UPDATE integration_user_link SET status = 'needs_reconnect' WHERE user_id = 'ada'")
    assert await names(service, user_id="ada") == []


async def test_it_runs_as_the_linked_user_and_refuses_anyone_else(
    runtime: Runtime,
    worker: Worker,
    service: httpx.AsyncClient,
    broker_caller: BrokerCaller,
    probe_integration: Any,
) -> None:
    ada = await service.post("/tools/probe_whoami/call", json={"team_id": TEAM, "user_id": "ada"})
    bob = await service.post("/tools/probe_whoami/call", json={"team_id": TEAM, "user_id": "bob"})
    nobody = await service.post("/tools/probe_whoami/call", json={"team_id": TEAM})
    over_broker = await broker_caller.call(
        Envelope(id="who-1", type="probe", kind="command", name="whoami", team_id=TEAM, headers={"x-user-id": "bob"})
    )

    assert ada.status_code == 200 and ada.json()["output"] == {"user_id": "ada", "external_user_id": "ada@probe"}
    assert bob.status_code == 403
    assert nobody.status_code == 400 and "user_id is required" in nobody.json()["error"]
    assert over_broker == {
        "ok": False,
        "status": "refused",
        "error": "user bob has not linked an account to this integration",
    }
    await runtime.pool.execute("UPDATE integration_user_link SET status = 'needs_reconnect' WHERE user_id = 'ada'")
    stale = await broker_caller.call(
        Envelope(id="who-2", type="probe", kind="command", name="whoami", team_id=TEAM, headers={"x-user-id": "ada"})
    )
    assert stale["status"] == "refused"
    assert stale["error"] == "user ada must connect their account again (link needs_reconnect)"
    link_id = await runtime.pool.fetchval("SELECT id FROM integration_user_link WHERE user_id = 'ada'")
    logged = await runtime.pool.fetch(
        "SELECT integration_user_link_id, details FROM integration_logs WHERE key = 'action_call' ORDER BY created_at"
    )
    assert [(r["integration_user_link_id"], r["details"]["status"]) for r in logged] == [
        (link_id, "succeeded"),
        (None, "refused"),
        (None, "refused"),
    ]
