"""Agent tools over HTTP and the broker: listed per team (and user), called through the worker
with the same retries, logs, deduplication and team scoping as every command."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from schemas.envelope import Envelope
from tests.conftest import INSTALLATION_ID, TEAM, eventually, queue_depth
from tests.fakes.github import FakeGitHubState
from tests.tools.conftest import GITHUB_TOOLS, OTHER_TEAM, BrokerCaller
from worker.cli.serve import create_app
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

COMMENT = {"repository": "acme/app", "issue_number": 7, "body": "Deployed to staging."}


async def call(client: httpx.AsyncClient, tool: str, arguments: dict[str, Any], **extra: Any) -> httpx.Response:
    return await client.post(f"/tools/{tool}/call", json={"team_id": TEAM, "arguments": arguments, **extra})


async def test_a_tool_is_listed_for_a_team_that_installed_its_integration_and_absent_for_one_that_did_not(
    service: httpx.AsyncClient, github_integration: Any
) -> None:
    mine = await service.get("/tools", params={"team_id": TEAM})
    theirs = await service.get("/tools", params={"team_id": OTHER_TEAM})

    assert mine.status_code == 200
    tools = {t["function"]["name"]: t for t in mine.json()["tools"]}
    assert list(tools) == GITHUB_TOOLS
    comment = tools["github_comment"]
    assert comment["type"] == "function"
    assert comment["function"]["description"].startswith("GitHub: Comment on a GitHub issue")
    parameters = comment["function"]["parameters"]
    assert parameters["type"] == "object"
    assert set(parameters["properties"]) == {"repository", "issue_number", "body"}
    assert set(parameters["required"]) == {"repository", "issue_number", "body"}
    assert theirs.json() == {"tools": []}

    mcp = (await service.get("/tools", params={"team_id": TEAM, "format": "mcp"})).json()["tools"]
    assert [t["name"] for t in mcp] == GITHUB_TOOLS
    assert mcp[0]["inputSchema"] == parameters
    assert set(mcp[0]["outputSchema"]["properties"]) == {"id", "url", "posted_as"}


async def test_the_tool_api_needs_the_service_token(runtime: Runtime, github_integration: Any) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://x") as anon:
        assert (await anon.get("/tools", params={"team_id": TEAM})).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert (await anon.get("/tools", params={"team_id": TEAM}, headers=wrong)).status_code == 401
        response = await anon.post("/tools/github_comment/call", json={"team_id": TEAM, "arguments": COMMENT})
        assert response.status_code == 401


async def test_a_call_over_http_reaches_github_and_answers_the_typed_output(
    runtime: Runtime, worker: Worker, service: httpx.AsyncClient, github: FakeGitHubState, github_integration: Any
) -> None:
    response = await call(service, "github_comment", COMMENT)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] is True and answer["status"] == "succeeded"
    [posted] = github.comments
    assert posted["repository"] == "acme/app" and posted["number"] == 7
    assert posted["body"].startswith("Deployed to staging.")
    assert posted["installation_id"] == INSTALLATION_ID
    assert answer["output"] == {"id": posted["id"], "url": posted["html_url"], "posted_as": "app"}

    later = await service.get(f"/tools/calls/{answer['call_id']}", params={"team_id": TEAM})
    assert later.status_code == 200 and later.json()["output"] == answer["output"]
    hidden = await service.get(f"/tools/calls/{answer['call_id']}", params={"team_id": OTHER_TEAM})
    assert hidden.status_code == 404

    log = await runtime.pool.fetchrow("SELECT * FROM integration_logs WHERE key = 'action_call'")
    assert log["integration_id"] == github_integration.id and log["level"] == "info"
    assert log["message"] == "github.comment succeeded"
    assert log["duration_ms"] is not None and log["duration_ms"] >= 0
    assert log["details"] == {"action": "comment", "status": "succeeded", "source": "http"}


async def test_the_same_idempotency_key_twice_makes_one_provider_call_and_answers_the_first_result(
    worker: Worker, service: httpx.AsyncClient, github: FakeGitHubState, github_integration: Any
) -> None:
    first = await call(service, "github_comment", COMMENT, idempotency_key="agent-run-1:step-3")
    second = await call(service, "github_comment", COMMENT, idempotency_key="agent-run-1:step-3")
    header = await service.post(
        "/tools/github_comment/call",
        json={"team_id": TEAM, "arguments": COMMENT},
        headers={"Idempotency-Key": "agent-run-1:step-3"},
    )

    assert first.status_code == second.status_code == header.status_code == 200
    assert first.json() == second.json() == header.json()
    assert github.comment_attempts == 1 and len(github.comments) == 1

    together = await asyncio.gather(
        *(call(service, "github_comment", COMMENT, idempotency_key="agent-run-2") for _ in range(3))
    )
    assert {r.status_code for r in together} == {200}
    assert len({r.json()["output"]["id"] for r in together}) == 1
    assert github.comment_attempts == 2 and len(github.comments) == 2


async def test_an_idempotency_key_reused_with_other_input_is_refused(
    worker: Worker, service: httpx.AsyncClient, github: FakeGitHubState, github_integration: Any
) -> None:
    first = await call(service, "github_comment", COMMENT, idempotency_key="agent-run-9:step-1")
    other = await call(
        service, "github_comment", {**COMMENT, "body": "something else"}, idempotency_key="agent-run-9:step-1"
    )

    assert first.status_code == 200
    assert other.status_code == 409
    assert "other input" in other.json()["error"]
    assert github.comment_attempts == 1 and [c["body"].split("\n")[0] for c in github.comments] == [COMMENT["body"]]


async def test_invalid_input_is_refused_per_field_without_calling_anything(
    runtime: Runtime, worker: Worker, service: httpx.AsyncClient, github: FakeGitHubState, github_integration: Any
) -> None:
    tokens = github.token_requests  # the install minted one
    response = await call(service, "github_comment", {"repository": "not a repository", "issue_number": 0})

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid input"
    assert set(body["fields"]) == {"repository", "issue_number", "body"}
    assert body["fields"]["body"] == ["Field required"]
    assert "greater than 0" in body["fields"]["issue_number"][0]
    assert await queue_depth(runtime, runtime.topology.queues("github")) == 0
    assert await runtime.pool.fetchval("SELECT count(*) FROM processed_events") == 0
    assert github.comment_attempts == 0 and github.token_requests == tokens

    unknown = await call(service, "github_delete_repository", {})
    assert unknown.status_code == 404 and "unknown tool" in unknown.json()["error"]


async def test_a_call_over_the_broker_is_answered_on_its_reply_queue_once_per_id(
    worker: Worker, broker_caller: BrokerCaller, github: FakeGitHubState, github_integration: Any
) -> None:
    envelope = Envelope(id="svc-42", type="github", kind="command", name="comment", team_id=TEAM, payload=COMMENT)

    first = await broker_caller.call(envelope)
    again = await broker_caller.call(envelope)  # the same id: the first answer, nothing run

    assert first["ok"] is True and first["status"] == "succeeded"
    assert first["output"]["url"] == github.comments[0]["html_url"]
    assert again == first
    assert github.comment_attempts == 1


async def test_invalid_input_over_the_broker_gets_field_errors_and_calls_nothing(
    worker: Worker, broker_caller: BrokerCaller, github: FakeGitHubState, github_integration: Any
) -> None:
    envelope = Envelope(
        id="svc-bad", type="github", kind="command", name="comment", team_id=TEAM, payload={"repository": "x"}
    )

    tokens = github.token_requests
    reply = await broker_caller.call(envelope)

    assert reply == {
        "ok": False,
        "status": "refused",
        "error": "invalid input",
        "fields": {
            "repository": ["String should match pattern '^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$'"],
            "issue_number": ["Field required"],
            "body": ["Field required"],
        },
    }
    assert github.comment_attempts == 0 and github.token_requests == tokens


async def test_another_teams_integration_is_never_reachable(
    runtime: Runtime,
    worker: Worker,
    service: httpx.AsyncClient,
    broker_caller: BrokerCaller,
    github: FakeGitHubState,
    github_integration: Any,
) -> None:
    over_http = await service.post(
        "/tools/github_comment/call",
        json={"team_id": OTHER_TEAM, "arguments": {**COMMENT, "integration_id": github_integration.id}},
    )
    over_broker = await broker_caller.call(
        Envelope(
            id="svc-steal",
            type="github",
            kind="command",
            name="comment",
            team_id=OTHER_TEAM,
            integration_id=github_integration.id,
            payload=COMMENT,
        )
    )

    assert over_http.status_code == 404
    assert "no active GitHub integration" in over_http.json()["error"]
    assert over_broker["ok"] is False and over_broker["status"] == "failed"
    assert f"does not belong to team {OTHER_TEAM}" in over_broker["error"]
    assert github.comment_attempts == 0


async def test_a_transient_provider_failure_is_retried_and_the_caller_still_gets_the_answer(
    runtime: Runtime, worker: Worker, service: httpx.AsyncClient, github: FakeGitHubState, github_integration: Any
) -> None:
    github.fail_comments.extend([502, 502])  # two deliveries fail (a comment's POST is not retried inline)

    response = await call(service, "github_comment", COMMENT)

    assert response.status_code == 200, response.text
    assert response.json()["output"]["id"] == github.comments[0]["id"]
    assert github.comment_attempts == 3 and len(github.comments) == 1


async def test_a_permanent_provider_failure_answers_failed_and_the_call_is_parked(
    runtime: Runtime, worker: Worker, service: httpx.AsyncClient, github: FakeGitHubState, github_integration: Any
) -> None:
    github.always_fail_comments = 404

    response = await call(service, "github_comment", COMMENT)

    assert response.status_code == 502
    answer = response.json()
    assert answer["ok"] is False and answer["status"] == "failed"
    assert "HTTP 404" in answer["error"]
    assert await eventually(lambda: queue_depth(runtime, runtime.topology.parked)) == 1
    later = await service.get(f"/tools/calls/{answer['call_id']}", params={"team_id": TEAM})
    assert later.status_code == 502 and later.json()["status"] == "failed"


async def test_a_slow_call_answers_pending_and_its_result_is_there_later(
    worker: Worker, service: httpx.AsyncClient, github: FakeGitHubState, github_integration: Any
) -> None:
    github.comment_delay = 1.0

    response = await call(service, "github_comment", COMMENT, timeout=0.2)

    assert response.status_code == 202
    pending = response.json()
    assert pending == {"call_id": pending["call_id"], "status": "pending", "ok": False}

    async def result() -> Any:
        answer = await service.get(f"/tools/calls/{pending['call_id']}", params={"team_id": TEAM})
        return answer.json() if answer.status_code == 200 else None

    done = await eventually(result)
    assert done["status"] == "succeeded" and done["output"]["id"] == github.comments[0]["id"]


async def test_a_team_with_two_installations_says_which_one(
    runtime: Runtime, worker: Worker, service: httpx.AsyncClient, github: FakeGitHubState, github_integration: Any
) -> None:
    github.installations[5151] = [{"id": 9100, "full_name": "acme/other", "private": False}]
    second, _ = await install(runtime, InstallRequest("github", TEAM, {"installationId": 5151}, source="test"))

    tools = (await service.get("/tools", params={"team_id": TEAM})).json()["tools"]
    tool = next(t for t in tools if t["function"]["name"] == "github_comment")
    choice = tool["function"]["parameters"]["properties"]["integration_id"]
    assert choice["enum"] == [github_integration.id, second.id]
    assert "integration_id" in tool["function"]["parameters"]["required"]

    unsaid = await call(service, "github_comment", COMMENT)
    assert unsaid.status_code == 422 and unsaid.json()["fields"] == {"integration_id": ["Field required"]}

    said = await call(service, "github_comment", {**COMMENT, "integration_id": second.id})
    assert said.status_code == 200, said.text
    assert github.comments[0]["installation_id"] == 5151


async def test_a_suspended_integration_answers_refused_and_calls_nothing(
    runtime: Runtime,
    worker: Worker,
    service: httpx.AsyncClient,
    broker_caller: BrokerCaller,
    github: FakeGitHubState,
    github_integration: Any,
) -> None:
    await runtime.pool.execute("UPDATE integrations SET status = 'suspended', updated_at = now()")

    listed = await service.get("/tools", params={"team_id": TEAM})
    over_http = await call(service, "github_comment", COMMENT)
    over_broker = await broker_caller.call(
        Envelope(id="svc-suspended", type="github", kind="command", name="comment", team_id=TEAM, payload=COMMENT)
    )

    assert listed.json() == {"tools": []}
    assert over_http.status_code == 404
    assert over_broker == {"ok": False, "status": "refused", "error": "integration is suspended"}
    assert github.comment_attempts == 0


async def test_an_agent_on_the_broker_lists_the_teams_tools(
    worker: Worker, broker_caller: BrokerCaller, github_integration: Any
) -> None:
    def listing(id_: str, team: str, **payload: Any) -> Envelope:
        return Envelope(id=id_, type="integration", kind="command", name="list_tools", team_id=team, payload=payload)

    mine = await broker_caller.call(listing("list-1", TEAM))
    as_mcp = await broker_caller.call(listing("list-2", TEAM, format="mcp"))
    theirs = await broker_caller.call(listing("list-3", OTHER_TEAM))

    assert [t["function"]["name"] for t in mine["output"]["tools"]] == GITHUB_TOOLS
    assert [t["name"] for t in as_mcp["output"]["tools"]] == GITHUB_TOOLS
    assert theirs == {"ok": True, "status": "succeeded", "output": {"tools": []}}
