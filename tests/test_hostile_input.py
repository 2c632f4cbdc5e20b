"""Hostile input from outside gets a clear 4xx and loses nothing: NUL characters PostgreSQL cannot
store, bodies over the limit, bodies that are not JSON. A provider's text holding NUL is stored
without it instead of being parked."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import TEAM, eventually, pull_request_payload, signed_github
from worker.cli import dead
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker


def admin(env: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {env['IW_ADMIN_TOKEN']}"}


def service(env: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {env['IW_SERVICE_TOKEN']}"}


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "token", "field"),
    [
        ("POST", "/integrations", None, {"type": "github", "team_id": "t\x00", "config": {}}, admin, "team_id"),
        ("GET", "/integrations", {"team_id": "t\x00"}, None, admin, "team_id"),
        ("GET", "/integrations/abc%00def", {"team_id": TEAM}, None, admin, "id"),
        ("DELETE", "/integrations/abc%00def", {"team_id": TEAM}, None, admin, "id"),
        ("GET", "/tools", {"team_id": "t\x00"}, None, service, "team_id"),
        ("GET", "/tools/calls/c%00", {"team_id": TEAM}, None, service, "call_id"),
        ("POST", "/tools/github_comment/call", None, {"team_id": "t\x00", "arguments": {}}, service, "team_id"),
        (
            "POST",
            "/integrations",
            None,
            {"type": "telegram", "team_id": TEAM, "config": {"botToken": "12:ab\x00c"}},
            admin,
            "config.botToken",
        ),
    ],
)
async def test_a_nul_character_is_refused_with_the_field_named(
    ingress: httpx.AsyncClient,
    env: dict[str, str],
    method: str,
    path: str,
    params: dict[str, str] | None,
    body: dict[str, Any] | None,
    token: Any,
    field: str,
) -> None:
    response = await ingress.request(method, path, params=params, json=body, headers=token(env))

    assert response.status_code == 400, response.text
    assert response.json()["fields"] == {field: ["contains a NUL character (U+0000), which cannot be stored"]}


async def test_a_body_over_the_limit_is_413_and_a_body_not_json_is_415(
    ingress: httpx.AsyncClient, env: dict[str, str], runtime: Runtime
) -> None:
    limit = runtime.settings.max_body_bytes
    too_large = await ingress.post(
        "/integrations", content=b"{" + b" " * limit + b"}", headers={**admin(env), "content-type": "application/json"}
    )
    assert too_large.status_code == 413

    async def chunks() -> Any:  # no Content-Length: counted as it comes
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = await ingress.post(
        "/tools/github_comment/call", content=chunks(), headers={**service(env), "content-type": "application/json"}
    )
    assert streamed.status_code == 413
    form = await ingress.post("/integrations", data={"type": "github"}, headers=admin(env))
    assert form.status_code == 415
    assert "JSON" in form.json()["error"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM integrations") == 0


async def test_a_pull_request_title_holding_nul_is_stored_without_it(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, github_integration: Any
) -> None:
    payload = pull_request_payload()
    payload["pull_request"]["title"] = "Fix the parser\u0000 for ABC-12"
    body, headers = signed_github("pull_request", payload)

    assert (await ingress.post("/webhooks/github", content=body, headers=headers)).status_code == 202

    title = await eventually(lambda: runtime.pool.fetchval("SELECT title FROM github_pull_requests"))
    assert title == "Fix the parser for ABC-12"
    assert await dead.list_parked(runtime.broker, None) == []


async def test_a_command_whose_team_id_holds_nul_is_parked_with_the_reason(runtime: Runtime, worker: Worker) -> None:
    body = (
        b'{"v": 1, "id": "cmd-1", "type": "smtp", "kind": "command", "name": "send_email",'
        b' "team_id": "t\\u0000", "payload": {}}'
    )
    await runtime.broker.publish(runtime.topology.incoming, "smtp.command.send_email", body, message_id="cmd-1")

    parked = await eventually(lambda: dead.list_parked(runtime.broker, None))
    assert [p.id for p in parked] == ["cmd-1"]
    assert "team_id" in parked[0].error
