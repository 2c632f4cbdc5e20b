"""The tools as an MCP server on the ingress, used with the `mcp` package's client over streamable HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.conftest import TEAM
from tests.fakes.github import FakeGitHubState
from tests.tools.conftest import GITHUB_TOOLS, OTHER_TEAM
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

COMMENT = {"repository": "acme/app", "issue_number": 3, "body": "Looks good to the agent."}


@asynccontextmanager
async def mcp_client(runtime: Runtime, url: str, team: str = TEAM) -> AsyncIterator[Client]:
    assert runtime.settings.service_token is not None
    headers = {"Authorization": f"Bearer {runtime.settings.service_token.get_secret_value()}", "X-Team-Id": team}
    transport = streamable_http_client(f"{url}/mcp", http_client=create_mcp_http_client(headers=headers))
    async with Client(transport) as client:
        yield client


async def test_an_mcp_client_lists_the_teams_tools_and_calls_one_that_reaches_github(
    runtime: Runtime, worker: Worker, live_ingress: str, github: FakeGitHubState, github_integration: Any
) -> None:
    async with mcp_client(runtime, live_ingress) as client:
        listed = await client.list_tools()
        result = await client.call_tool("github_comment", COMMENT, meta={"idempotency_key": "mcp-1"})
        again = await client.call_tool("github_comment", COMMENT, meta={"idempotency_key": "mcp-1"})

    assert [t.name for t in listed.tools] == GITHUB_TOOLS
    tool = listed.tools[0]
    assert tool.name == "github_comment"
    assert set(tool.input_schema["properties"]) == {"repository", "issue_number", "body"}
    assert tool.output_schema is not None and set(tool.output_schema["properties"]) == {"id", "url", "posted_as"}
    assert result.is_error is False
    [posted] = github.comments
    assert result.structured_content == {"id": posted["id"], "url": posted["html_url"], "posted_as": "app"}
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    assert again.structured_content == result.structured_content
    assert github.comment_attempts == 1


async def test_an_mcp_call_with_invalid_input_is_an_error_per_field_and_calls_nothing(
    runtime: Runtime, worker: Worker, live_ingress: str, github: FakeGitHubState, github_integration: Any
) -> None:
    async with mcp_client(runtime, live_ingress) as client:
        result = await client.call_tool("github_comment", {"repository": "acme/app", "issue_number": "seven"})

    assert result.is_error is True
    error = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert error["error"] == "invalid input"
    assert set(error["fields"]) == {"issue_number", "body"}
    assert github.comment_attempts == 0


async def test_an_mcp_client_of_another_team_sees_and_reaches_nothing(
    runtime: Runtime, worker: Worker, live_ingress: str, github: FakeGitHubState, github_integration: Any
) -> None:
    async with mcp_client(runtime, live_ingress, team=OTHER_TEAM) as client:
        listed = await client.list_tools()
        result = await client.call_tool("github_comment", {**COMMENT, "integration_id": github_integration.id})

    assert listed.tools == []
    assert result.is_error is True
    assert "no active GitHub integration" in json.loads(result.content[0].text)["error"]  # type: ignore[union-attr]
    assert github.comment_attempts == 0


async def test_the_mcp_endpoint_needs_the_service_token_and_a_team(runtime: Runtime, live_ingress: str) -> None:
    async with httpx.AsyncClient(base_url=live_ingress) as http:
        anonymous = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert runtime.settings.service_token is not None
        token = {"Authorization": f"Bearer {runtime.settings.service_token.get_secret_value()}"}
        teamless = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=token)

    assert anonymous.status_code == 401
    assert teamless.status_code == 400 and "x-team-id" in teamless.json()["error"]
