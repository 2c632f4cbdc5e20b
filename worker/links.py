"""Linking a person's chat account (Slack, Mattermost, WhatsApp, ...) to their platform account.

A person who is not linked yet and writes to the bot gets one reply with a link to the platform
(worker/conversation.py): `IW_PLATFORM_URL/integrations/associate?token=<token>`. The token is
signed (HS256 with IW_SIGNING_KEY, purpose `link`) over the integration, its team, the external
user id and name and an expiry (IW_LINK_TTL); nobody can mint or alter one. The platform signs
the person in, shows what is being linked, and confirms with

    integration.command.link_user  {"token": ..., "user_id": ...}   (envelope team_id: the user's team)
    POST /links  {"token": ..., "user_id": ..., "team_id": ...}     (Authorization: Bearer IW_ADMIN_TOKEN)

Only a valid, unexpired, unaltered token of that team, whose integration is still installed and
active, creates the link. An external account links to one platform user: the first confirmation
wins, the same user confirming again changes nothing, another user is refused. Once linked, the
person gets a confirmation where they wrote, and `integration.user_linked` is published.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import asyncpg
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from schemas.envelope import Envelope
from schemas.events import UserLinked
from worker import signing
from worker.context import Context, LogEntry, derived_id
from worker.errors import PermanentError, field_errors
from worker.http_answers import error, json_response, require_bearer
from worker.logging import get_logger
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.runtime import Runtime

LINK_PURPOSE = "link"
ASSOCIATE_PATH = "/integrations/associate"
LINKED_TEXT = "Your account is linked. Write to me again and I will answer."


class LinkRefused(PermanentError):
    """The link was not created; `status` is the HTTP answer (400 bad token, 403 another team,
    404 integration gone, 409 already linked to someone else or integration inactive)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LinkClaim:
    """What a link token says: who, on which integration, and where to confirm once linked."""

    integration_id: str
    team_id: str
    type: str
    external_user_id: str
    external_user_name: str | None
    reply: dict[str, Any] | None = None  # {"action", "input", "text_field"}: the thread it came from


def mint(settings: Settings, claim: LinkClaim) -> str:
    body: dict[str, Any] = {
        "iid": claim.integration_id,
        "team": claim.team_id,
        "typ": claim.type,
        "sub": claim.external_user_id,
        "name": claim.external_user_name,
    }
    if claim.reply is not None:
        body["re"] = claim.reply
    return signing.sign(settings.signing_key.get_secret_value(), LINK_PURPOSE, body, settings.link_ttl)


def url(settings: Settings, token: str) -> str:
    return f"{settings.platform_url.rstrip('/')}{ASSOCIATE_PATH}?{urlencode({'token': token})}"


def read(settings: Settings, token: str) -> LinkClaim:
    """The token's claim; LinkRefused(400) when it is forged, altered, expired or not a link token."""
    try:
        claims = signing.verify(settings.signing_key.get_secret_value(), LINK_PURPOSE, token)
    except signing.InvalidSignedToken as exc:
        raise LinkRefused(400, f"link token refused: {exc}") from None
    try:
        return LinkClaim(
            integration_id=str(claims["iid"]),
            team_id=str(claims["team"]),
            type=str(claims["typ"]),
            external_user_id=str(claims["sub"]),
            external_user_name=claims.get("name"),
            reply=claims.get("re"),
        )
    except KeyError:
        raise LinkRefused(400, "link token refused: token is invalid") from None


class LinkUserInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=8192, description="The token from the association link.")
    user_id: str = Field(min_length=1, max_length=256, description="The platform user who confirms it.")


class LinkUserOutput(BaseModel):
    link_id: str
    integration_id: str
    integration_type: str
    user_id: str
    external_user_id: str
    external_user_name: str | None
    created: bool = Field(description="False when this user had already confirmed this link.")


async def confirm(ctx: Context, request: LinkUserInput) -> LinkUserOutput:
    """`integration.command.link_user`: check the token and stage the link (and its event)."""
    if ctx.team_id is None:
        raise LinkRefused(400, "team_id is required: the team of the user who confirms")
    claim = read(ctx.runtime_settings, request.token)
    if claim.team_id != ctx.team_id:
        raise LinkRefused(403, "this link token is for another team")
    row = await ctx.db.fetchrow(
        "SELECT type, status FROM integrations WHERE team_id = $1 AND id = $2", claim.integration_id
    )
    if row is None or row["type"] != claim.type:
        raise LinkRefused(404, "the integration of this link token is no longer installed")
    if row["status"] != "active":
        raise LinkRefused(409, f"the integration of this link token is {row['status']}")
    existing = await ctx.db.fetchrow(
        """SELECT id, user_id FROM integration_user_link
           WHERE team_id = $1 AND integration_id = $2 AND external_user_id = $3""",
        claim.integration_id,
        claim.external_user_id,
    )
    output = LinkUserOutput(
        link_id=existing["id"] if existing is not None else derived_id(ctx.envelope.id, "link"),
        integration_id=claim.integration_id,
        integration_type=claim.type,
        user_id=request.user_id,
        external_user_id=claim.external_user_id,
        external_user_name=claim.external_user_name,
        created=existing is None,
    )
    if existing is not None:
        if existing["user_id"] != request.user_id:
            raise LinkRefused(409, "this account is already linked to another user")
        return output
    ctx.db.write(
        """INSERT INTO integration_user_link
             (id, team_id, user_id, external_user_id, external_user_name, integration_id, integration_type)
           VALUES ($2, $1, $3, $4, $5, $6, $7)""",
        output.link_id,
        request.user_id,
        claim.external_user_id,
        claim.external_user_name,
        claim.integration_id,
        claim.type,
    )
    ctx.emit(
        UserLinked(
            link_id=output.link_id,
            integration_id=claim.integration_id,
            integration_type=claim.type,
            user_id=request.user_id,
            external_user_id=claim.external_user_id,
            external_user_name=claim.external_user_name,
        )
    )
    ctx.staged.logs.append(
        LogEntry(
            claim.integration_id,
            ctx.team_id,
            "info",
            "user_linked",
            f"{claim.external_user_name or claim.external_user_id} linked to platform user {request.user_id}",
            ctx.envelope.id,
            {"external_user_id": claim.external_user_id},
            output.link_id,
        )
    )
    if claim.reply:  # tell them where they wrote
        field = str(claim.reply.get("text_field") or "text")
        ctx.publish(
            "command",
            str(claim.reply["action"]),
            {**dict(claim.reply.get("input") or {}), field: LINKED_TEXT},
            id=f"{ctx.envelope.id}/linked",
            type_=claim.type,
            integration_id=claim.integration_id,
            team_id=claim.team_id,
        )
    return output


def link_routes(runtime: Runtime) -> list[BaseRoute]:
    """`POST /links`: the admin HTTP way to confirm a link token (same rules as link_user)."""
    log = get_logger(component="links")

    async def create(request: Request) -> Response:
        refused = require_bearer(request, runtime.settings.admin_token, "admin")
        if refused is not None:
            return refused
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return error(400, "body is not JSON")
        if not isinstance(body, dict):
            return error(400, "body must be a JSON object")
        team_id = body.pop("team_id", None)
        if not isinstance(team_id, str) or not team_id:
            return error(400, "team_id is required: the team of the user who confirms")
        try:
            payload = LinkUserInput.model_validate(body)
        except ValidationError as exc:
            return error(400, "invalid request", fields=field_errors(exc))
        envelope = Envelope(
            id=f"link:{uuid.uuid4()}",
            type="integration",
            kind="command",
            name="link_user",
            team_id=team_id,
            payload=payload.model_dump(),
        )
        ctx = runtime.context(envelope, None, log=log.bind(team_id=team_id))
        try:
            output = await confirm(ctx, payload)
            await runtime.commit(ctx.staged)
        except LinkRefused as exc:
            log.info("link refused", team_id=team_id, status=exc.status, reason=exc.message)
            return error(exc.status, exc.message)
        except asyncpg.UniqueViolationError:
            return error(409, "this account was linked to another user meanwhile")
        log.info("link confirmed", team_id=team_id, link_id=output.link_id, created=output.created)
        return json_response(output.model_dump(), 201 if output.created else 200)

    return [Route("/links", create, methods=["POST"])]
