"""Agent tools over HTTP, behind `Authorization: Bearer <IW_SERVICE_TOKEN or a tool token>`
(worker/platform/tool_tokens.py: a tool token fixes the team, and maybe the user).

GET  /tools?team_id=&user_id=&format=openai|mcp   the tools this team (and user) can call
POST /tools/{name}/call                           body `schemas.tools.ToolCallRequest`; answers
                                                  200 succeeded, 202 pending, 422 refused (or
                                                  invalid input, per field), 502 failed,
                                                  403/404 not available to this team or user
GET  /tools/calls/{call_id}?team_id=              the answer of an earlier call (404 while none)
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from schemas.tools import IDEMPOTENCY_KEY_PATTERN, ToolCallRequest
from worker.platform.http import Endpoint, error, json_response, parse_body
from worker.platform.tool_tokens import ScopeRefused, ToolCaller, caller
from worker.platform.tools import CallOutcome, ToolCallError, ToolGateway, render
from worker.runtime.broker import BrokerUnavailable

_KEY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN)
_KEY_RULE = "1 to 200 of A-Z a-z 0-9 _ . : @ -"
STATUS_CODES = {"succeeded": 200, "pending": 202, "refused": 422, "failed": 502}
ToolEndpoint = Callable[[Request, ToolCaller], Awaitable[Response]]


def answer(outcome: CallOutcome) -> Response:
    return json_response(outcome.answer(), STATUS_CODES[outcome.status])


def tool_routes(gateway: ToolGateway) -> list[BaseRoute]:
    settings = gateway.runtime.settings

    async def list_tools(request: Request, who: ToolCaller) -> Response:
        team_id, user_id = who.scope(request.query_params.get("team_id"), request.query_params.get("user_id") or None)
        format_ = request.query_params.get("format", "openai")
        if format_ not in ("openai", "mcp"):
            return error(400, "format must be openai or mcp")
        tools = await gateway.list(team_id, user_id)
        return json_response({"tools": render(tools, "openai" if format_ == "openai" else "mcp")})

    async def call(request: Request, who: ToolCaller) -> Response:
        body = await parse_body(request, ToolCallRequest)
        if isinstance(body, Response):
            return body
        team_id, user_id = who.scope(body.team_id, body.user_id)
        key = body.idempotency_key or request.headers.get("idempotency-key")
        if key is not None and not _valid_key(key):
            return error(400, "invalid Idempotency-Key", fields={"idempotency_key": [_KEY_RULE]})
        try:
            outcome = await gateway.call(
                team_id=team_id,
                user_id=user_id,
                name=request.path_params["name"],
                arguments=body.arguments,
                idempotency_key=key,
                source="http",
                wait_seconds=body.timeout,
            )
        except ToolCallError as exc:
            return json_response(exc.as_dict(), exc.status)
        except BrokerUnavailable:
            return json_response({"error": "broker unavailable, try again later"}, 503, headers={"Retry-After": "5"})
        return answer(outcome)

    async def result(request: Request, who: ToolCaller) -> Response:
        # a user's token reads that user's calls only; a team's, any call of the team
        team_id, user_id = who.scope(request.query_params.get("team_id"), request.query_params.get("user_id"))
        outcome = await gateway.result(request.path_params["call_id"], team_id, user_id)
        if outcome is None:
            return error(404, "no answer for this call (yet)")
        return answer(outcome)

    def service(endpoint: ToolEndpoint) -> Endpoint:
        async def authorised(request: Request) -> Response:
            who = caller(request, settings)
            if isinstance(who, Response):
                return who
            try:
                return await endpoint(request, who)
            except ScopeRefused as exc:
                return error(exc.status, str(exc))

        return authorised

    return [
        Route("/tools", service(list_tools), methods=["GET"]),
        Route("/tools/calls/{call_id}", service(result), methods=["GET"]),
        Route("/tools/{name}/call", service(call), methods=["POST"]),
    ]


def _valid_key(key: str) -> bool:
    return _KEY_RE.match(key) is not None
