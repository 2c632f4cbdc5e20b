"""The integrations' tools as an MCP server, over streamable HTTP at `/mcp` on the ingress.

Any MCP client connects with:

    Authorization: Bearer <token>           IW_SERVICE_TOKEN, or a tool token (one team, maybe
                                            one user: worker/platform/tool_tokens.py)
    X-Team-Id: <team>                       whose integrations it uses (required with the
                                            service token; a tool token supplies it)
    X-User-Id: <platform user>              who it acts for (optional; needed by tools that act
                                            as a user, which are listed only when that user
                                            has linked an account)

`tools/list` answers what `GET /tools?format=mcp` does; `tools/call` runs the same path as
`POST /tools/{name}/call` (worker/platform/tools.py), with the idempotency key in the request's
`_meta.idempotency_key` (or the `Idempotency-Key` header). A refused or failed call is a
tool result with `isError: true` whose text says why (per field for invalid input); a call
still running after IW_TOOL_TIMEOUT says so with its `call_id`, and the same key asked again
later answers its result.

Stateless: no MCP session lives in this process, so any ingress process answers any request.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from worker.platform.http import error
from worker.platform.tool_tokens import ScopeRefused, ToolCaller, caller
from worker.platform.tools import CallOutcome, ToolCallError, ToolGateway, encode, render
from worker.runtime.broker import BrokerUnavailable

TEAM_HEADER = "x-team-id"
USER_HEADER = "x-user-id"
META_KEY = "idempotency_key"
_WHO = "iw_tool_caller"

INSTRUCTIONS = (
    "Tools of the integrations (GitHub, Slack, Gmail, ...) this team has installed. Each call acts on "
    "the real service; pass _meta.idempotency_key to make a retried call safe."
)


class McpEndpoint:
    def __init__(self, gateway: ToolGateway) -> None:
        self.gateway = gateway
        self.server: Server[Any] = Server(
            "integration-worker",
            version="0.1.0",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self.manager = StreamableHTTPSessionManager(app=self.server, stateless=True, json_response=True)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        who = caller(request, self.gateway.runtime.settings)
        if isinstance(who, ToolCaller):
            try:
                team_id, user_id = who.scope(
                    request.headers.get(TEAM_HEADER),
                    request.headers.get(USER_HEADER),
                    team_field=f"the {TEAM_HEADER} header",
                )
            except ScopeRefused as exc:
                who = error(exc.status, str(exc))
            else:
                scope.setdefault("state", {})[_WHO] = (team_id, user_id)
        if not isinstance(who, ToolCaller):
            await who(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)

    # --- MCP handlers ------------------------------------------------------------------------------------

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        team_id, user_id = _who(ctx)
        tools = await self.gateway.list(team_id, user_id)
        return types.ListToolsResult(tools=[types.Tool.model_validate(tool) for tool in render(tools, "mcp")])

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        team_id, user_id = _who(ctx)
        key = (params.meta or {}).get(META_KEY) or _header(ctx, "idempotency-key")
        try:
            outcome = await self.gateway.call(
                team_id=team_id,
                user_id=user_id,
                name=params.name,
                arguments=params.arguments or {},
                idempotency_key=str(key) if key else None,
                source="mcp",
            )
        except ToolCallError as exc:
            return _error(exc.as_dict())
        except BrokerUnavailable:
            return _error({"error": "the service is unavailable; try again later"})
        return _result(outcome)


def _header(ctx: ServerRequestContext[Any, Any], name: str) -> str | None:
    request = ctx.request
    if isinstance(request, Request):
        value: str | None = request.headers.get(name)
        return value
    return None


def _who(ctx: ServerRequestContext[Any, Any]) -> tuple[str, str | None]:
    """The team and user the endpoint settled for this request (the token and the headers)."""
    request = ctx.request
    settled = request.scope.get("state", {}).get(_WHO) if isinstance(request, Request) else None
    if settled is None:
        raise ValueError("no caller: the endpoint refuses such requests before they get here")
    team_id, user_id = settled
    return str(team_id), user_id


def _error(body: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=encode(body))], is_error=True)


def _result(outcome: CallOutcome) -> types.CallToolResult:
    if outcome.status == "succeeded" and outcome.reply is not None:
        output = outcome.reply.output or {}
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=encode(output))],
            structured_content=output,
            meta={"call_id": outcome.call_id},
        )
    answer = outcome.answer()
    if outcome.status == "pending":
        answer["error"] = "still running; call again with the same idempotency key for its result"
    return _error(answer)
