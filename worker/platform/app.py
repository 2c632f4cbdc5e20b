"""The platform's HTTP app, apart from the webhook ingress: what the platform's backend, its users'
browsers and AI agents call. `integration-worker run` serves it beside the ingress on one port;
`integration-worker api` serves it alone.

/integrations...          the install lifecycle and catalog (admin_api.py; IW_ADMIN_TOKEN)
/integrations/{id}/logs, /links...   log rows, users' links (link_api.py; IW_ADMIN_TOKEN)
GET  /oauth/{type}/start, /authorize, /callback   OAuth connect flows (oauth.py)
POST /links               confirm an account-link token (admin_api.py; IW_ADMIN_TOKEN)
GET  /attachments/{token} a file that came with a message (attachments.py)
/tools...                 agent tools over HTTP (tools_api.py; IW_SERVICE_TOKEN or a tool token)
POST /tool-tokens         a tool token for one team (and user) (tool_tokens.py; IW_ADMIN_TOKEN)
/mcp                      agent tools as an MCP server (mcp_server.py; IW_SERVICE_TOKEN or a tool token)
GET  /healthz, /readyz, /metrics   health and Prometheus (worker/runtime/health.py)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.platform.admin_api import admin_routes, link_routes
from worker.platform.attachments import attachment_routes
from worker.platform.guard import RequestGuard
from worker.platform.link_api import link_admin_routes
from worker.platform.mcp_server import McpEndpoint
from worker.platform.oauth import oauth_routes
from worker.platform.tool_tokens import tool_token_routes
from worker.platform.tools import ToolGateway
from worker.platform.tools_api import tool_routes
from worker.runtime import health
from worker.runtime.runtime import Runtime


class PlatformApp:
    """The ASGI app, and what must run while it serves (the MCP session manager, the tool
    gateway's reply queue): `async with app.running(): ...`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.gateway = ToolGateway(runtime)
        self.mcp = McpEndpoint(self.gateway)

        async def probe(request: Request) -> Response:
            status, body, content_type = await health.probe(runtime, request.url.path)
            return Response(body, status, media_type=content_type)

        routes = [
            *(Route(path, probe, methods=["GET"]) for path in sorted(health.HEALTH_PATHS)),
            *admin_routes(runtime),
            *link_admin_routes(runtime),
            *oauth_routes(runtime),
            *link_routes(runtime),
            *attachment_routes(runtime),
            *tool_routes(self.gateway),
            *tool_token_routes(runtime.settings),
            Route("/mcp", self.mcp),
        ]
        self.app = Starlette(routes=routes, lifespan=self._lifespan)
        self.router = self.app.router
        self._guarded = RequestGuard(self.app, self.router, max_body_bytes=runtime.settings.max_body_bytes)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.mcp.running():
            try:
                yield
            finally:
                await self.gateway.close()

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        async with self.running():
            yield

    async def __call__(self, scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        await self._guarded(scope, receive, send)  # type: ignore[arg-type]
