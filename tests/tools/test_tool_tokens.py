"""Least privilege for tool callers: a tool token acts for one team (and maybe one user) only,
over HTTP and MCP; the all-teams service token can be turned off and tool tokens still work."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import TEAM
from tests.fakes.github import FakeGitHubState
from tests.helpers import cli
from tests.tools.conftest import GITHUB_TOOLS, OTHER_TEAM
from worker.cli.serve import create_app
from worker.core import signing
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker


async def issued(admin: httpx.AsyncClient, **request: Any) -> str:
    response = await admin.post("/tool-tokens", json=request)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["team_id"] == request["team_id"] and body["expires_at"]
    token: str = body["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_team_token_lists_and_calls_for_its_team_only(
    runtime: Runtime, admin: httpx.AsyncClient, github_integration: Any
) -> None:
    token = await issued(admin, team_id=TEAM)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://x", headers=bearer(token)
    ) as agent:
        mine = await agent.get("/tools")  # the team comes from the token
        other = await agent.get("/tools", params={"team_id": OTHER_TEAM})
        call = await agent.post("/tools/github_comment/call", json={"team_id": OTHER_TEAM, "arguments": {}})
        result = await agent.get("/tools/calls/some-call", params={"team_id": OTHER_TEAM})

    assert mine.status_code == 200 and [t["function"]["name"] for t in mine.json()["tools"]] == GITHUB_TOOLS
    assert other.status_code == 403 and "another team" in other.json()["error"]
    assert call.status_code == 403 and result.status_code == 403


async def test_a_user_token_acts_for_that_user_alone(
    runtime: Runtime, admin: httpx.AsyncClient, github_integration: Any
) -> None:
    token = await issued(admin, team_id=TEAM, user_id="user-ann")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://x", headers=bearer(token)
    ) as agent:
        as_ann = await agent.get("/tools", params={"user_id": "user-ann"})
        as_bob = await agent.get("/tools", params={"user_id": "user-bob"})

    assert as_ann.status_code == 200
    assert as_bob.status_code == 403 and "another user" in as_bob.json()["error"]


async def test_a_users_calls_and_answers_are_that_users_own(
    runtime: Runtime, worker: Worker, admin: httpx.AsyncClient, github: FakeGitHubState, github_integration: Any
) -> None:
    app = create_app(runtime)
    comment = {"repository": "acme/app", "issue_number": 7, "body": "Deployed."}
    request = {"arguments": comment, "idempotency_key": "run-1"}

    async def client(token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x", headers=bearer(token))

    async with (
        await client(await issued(admin, team_id=TEAM, user_id="user-ann")) as ann,
        await client(await issued(admin, team_id=TEAM, user_id="user-bob")) as bob,
        await client(await issued(admin, team_id=TEAM)) as team,
    ):
        by_ann = await ann.post("/tools/github_comment/call", json=request)
        by_bob = await bob.post("/tools/github_comment/call", json=request)  # the same key: his own call
        ann_call = by_ann.json()["call_id"]
        bob_reads_ann = await bob.get(f"/tools/calls/{ann_call}")
        ann_reads_ann = await ann.get(f"/tools/calls/{ann_call}")
        team_reads_ann = await team.get(f"/tools/calls/{ann_call}")

    assert by_ann.status_code == by_bob.status_code == 200, (by_ann.text, by_bob.text)
    assert by_bob.json()["call_id"] != ann_call
    assert by_bob.json()["output"]["id"] != by_ann.json()["output"]["id"]
    assert github.comment_attempts == 2  # Bob never got Ann's stored answer
    assert bob_reads_ann.status_code == 404
    assert ann_reads_ann.status_code == 200 and ann_reads_ann.json()["output"] == by_ann.json()["output"]
    assert team_reads_ann.status_code == 200


async def test_a_token_lives_at_least_a_second(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/tool-tokens", json={"team_id": TEAM, "ttl_seconds": 0.5})
    assert response.status_code == 400 and "ttl_seconds" in response.json()["fields"]


async def test_tokens_forged_expired_or_of_another_purpose_are_refused(
    runtime: Runtime, github_integration: Any
) -> None:
    key = runtime.settings.signing_key.get_secret_value()
    refused = {
        "forged": signing.sign("not-the-signing-key-of-this-service", "tool", {"team": TEAM}, 600),
        "expired": signing.sign(key, "tool", {"team": TEAM}, -5),
        "a link token": signing.sign(key, "link", {"team": TEAM}, 600),
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://x") as anon:
        for what, token in refused.items():
            response = await anon.get("/tools", headers=bearer(token))
            assert response.status_code == 401, what


async def test_with_the_service_token_off_tool_tokens_still_work_over_mcp(
    runtime: Runtime, admin: httpx.AsyncClient, github_integration: Any, live_ingress: str
) -> None:
    service_token = runtime.settings.service_token
    assert service_token is not None
    token = await issued(admin, team_id=TEAM)
    runtime.settings.service_token = None  # turned off
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    mcp_headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
    async with httpx.AsyncClient(base_url=live_ingress) as http:
        old = await http.get("/tools", params={"team_id": TEAM}, headers=bearer(service_token.get_secret_value()))
        listed = await http.post("/mcp", json=listing, headers={**bearer(token), **mcp_headers})
        foreign = await http.post(
            "/mcp", json=listing, headers={**bearer(token), **mcp_headers, "X-Team-Id": OTHER_TEAM}
        )

    assert old.status_code == 401
    assert listed.status_code == 200, listed.text
    assert [t["name"] for t in listed.json()["result"]["tools"]] == GITHUB_TOOLS
    assert foreign.status_code == 403


def test_the_cli_issues_a_tool_token(env: dict[str, str]) -> None:
    done = cli(env, "tool-token", "--team", TEAM, "--user", "user-ann", "--ttl", "600")

    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    claims = signing.verify(env["IW_SIGNING_KEY"], "tool", body["token"])
    assert claims == {"team": TEAM, "user": "user-ann"}


async def test_lowering_the_maximum_cuts_the_tokens_already_out(
    runtime: Runtime, admin: httpx.AsyncClient, github_integration: Any
) -> None:
    token = await issued(admin, team_id=TEAM, ttl_seconds=7200)
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as agent:
        before = await agent.get("/tools", headers=bearer(token))
        runtime.settings.tool_token_max_ttl = 3600  # after a leak: tokens live an hour at most
        after = await agent.get("/tools", headers=bearer(token))
        fresh = await agent.get("/tools", headers=bearer(await issued(admin, team_id=TEAM, ttl_seconds=7200)))

    assert before.status_code == 200
    assert after.status_code == 401 and "longer than the 3600 s now allowed" in after.json()["error"]
    assert fresh.status_code == 200  # issued under the new maximum (capped to an hour)
