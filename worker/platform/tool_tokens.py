"""Who may call the agent tools (`/tools`, `/mcp`), and for whom.

    IW_SERVICE_TOKEN     all teams: a trusted service names the team (and user) in each request;
                         unset, this token is off
    a tool token         one team, and optionally one user: signed (IW_SIGNING_KEY, purpose
                         `tool`), expiring (at most IW_TOOL_TOKEN_MAX_TTL, checked again when the
                         token is presented: lowering it cuts tokens already out), issued by the admin API
                         (`POST /tool-tokens`) or `integration-worker tool-token`; what a request
                         names must match it (403 otherwise), and what it leaves out the token fills

A team-only token may name any user of its team (as the team's own agent would); a user's token
acts for that user alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from worker.core import signing
from worker.core.settings import Settings
from worker.platform.http import bearer_ok, bearer_only, error, json_response, parse_body

PURPOSE = "tool"


class ToolTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team_id: str = Field(min_length=1, max_length=256, description="The only team the token acts for.")
    user_id: str | None = Field(default=None, min_length=1, max_length=256, description="The only user, if any.")
    ttl_seconds: float = Field(default=86400.0, ge=1, description="How long the token works, in seconds (at least 1).")


class ToolToken(BaseModel):
    token: str
    team_id: str
    user_id: str | None
    expires_at: datetime


class ScopeRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ToolCaller:
    team_id: str | None  # None: any team (the service token)
    user_id: str | None = None

    def scope(self, team_id: str | None, user_id: str | None, *, team_field: str = "team_id") -> tuple[str, str | None]:
        """The team and user a request acts for, within what this caller may do."""
        if self.team_id is None:
            if not team_id:
                raise ScopeRefused(400, f"{team_field} is required: whose integrations to use")
            return team_id, user_id
        if team_id and team_id != self.team_id:
            raise ScopeRefused(403, "this token is for another team")
        if self.user_id is not None and user_id and user_id != self.user_id:
            raise ScopeRefused(403, "this token acts for another user")
        return self.team_id, self.user_id or user_id


def issue(settings: Settings, request: ToolTokenRequest) -> ToolToken:
    ttl = min(request.ttl_seconds, settings.tool_token_max_ttl)
    claims: dict[str, str] = {"team": request.team_id}
    if request.user_id is not None:
        claims["user"] = request.user_id
    token = signing.sign(settings.signing_key.get_secret_value(), PURPOSE, claims, ttl)
    expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=int(ttl))
    return ToolToken(token=token, team_id=request.team_id, user_id=request.user_id, expires_at=expires_at)


def caller(request: Request, settings: Settings) -> ToolCaller | Response:
    """The caller of a tool request, or the 401 to answer."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error(401, "missing bearer token (IW_SERVICE_TOKEN or a tool token)")
    if settings.service_token is not None and bearer_ok(request, settings.service_token):
        return ToolCaller(team_id=None)
    try:
        claims = signing.verify(
            settings.signing_key.get_secret_value(), PURPOSE, token.strip(), max_ttl=settings.tool_token_max_ttl
        )
    except signing.InvalidSignedToken as exc:
        return error(401, f"tool token refused: {exc}")
    team = claims.get("team")
    user = claims.get("user")
    if not isinstance(team, str) or not (user is None or isinstance(user, str)):
        return error(401, "tool token refused: token is invalid")
    return ToolCaller(team_id=team, user_id=user)


def tool_token_routes(settings: Settings) -> list[BaseRoute]:
    """`POST /tool-tokens` {team_id, user_id?, ttl_seconds?} (admin token) -> 201 the token."""

    async def create(request: Request) -> Response:
        body = await parse_body(request, ToolTokenRequest)
        if isinstance(body, Response):
            return body
        return json_response(issue(settings, body).model_dump(mode="json"), 201)

    return [Route("/tool-tokens", bearer_only(settings.admin_token, "admin", create), methods=["POST"])]
