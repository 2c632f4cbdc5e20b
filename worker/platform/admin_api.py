"""The install lifecycle over HTTP, behind `Authorization: Bearer IW_ADMIN_TOKEN` (the platform's
backend calls it; a dashboard renders what the catalog describes).

GET    /integrations/catalog              every type: name, description, config JSON Schema
                                          (secrets `writeOnly`), actions and their schemas
GET    /integrations?team_id=             the team's integrations (config without secrets)
GET    /integrations/{id}?team_id=        one of them
POST   /links                             {token, user_id, team_id}: confirm an account-link token
                                          (the same rules as `integration.command.link_user`)
POST   /integrations                      {type, team_id, config, external_team_id?, user_id?}:
                                          201 installed, 200 reconfigured; 400 invalid config
                                          (per field), 422 refused by the service, 404 unknown type
PATCH  /integrations/{id}                 {team_id, config, user_id?}: change config fields
DELETE /integrations/{id}?team_id=[&force=true]

Every path runs worker/platform/install.py, as the CLI and `integration.command.install` do. No read
returns a secret.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from schemas.envelope import Envelope
from schemas.rows import IntegrationRow
from worker.core.logging import get_logger
from worker.platform import contract
from worker.platform.http import Endpoint, bearer_only, error, json_response, parse_body
from worker.platform.install import (
    InstallError,
    InstallRequest,
    install,
    owned_row,
    public_config,
    readable,
    uninstall,
    update,
)
from worker.platform.links import LinkUserInput, confirm
from worker.platform.tools import BUILTIN_TYPE
from worker.runtime import store
from worker.runtime.runtime import Runtime
from worker.sdk.association import LinkRefused
from worker.sdk.records import IntegrationRecord


class InstallBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    team_id: str = Field(min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)
    external_team_id: str | None = None
    user_id: str | None = None


class UpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team_id: str = Field(min_length=1)
    config: dict[str, Any]
    user_id: str | None = None


def describe(record: IntegrationRecord) -> dict[str, Any]:
    row = record.row
    return {
        "id": row.id,
        "type": row.type,
        "name": row.name,
        "team_id": row.team_id,
        "external_team_id": row.external_team_id,
        "status": row.status,
        "config": public_config(record.config),
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def describe_row(runtime: Runtime, row: IntegrationRow) -> dict[str, Any]:
    """`describe`, or what can be said of an integration whose config cannot be read."""
    try:
        return describe(readable(runtime, row))
    except InstallError as exc:  # a key gone from IW_SECRET_KEYS, a model changed: say so
        return {"id": row.id, "type": row.type, "team_id": row.team_id, "status": row.status, "error": exc.message}


def admin_routes(runtime: Runtime) -> list[BaseRoute]:
    catalog_body = {  # the registry does not change once loaded: built once
        "integrations": [item for item in contract.catalog(runtime.registry) if item["type"] != BUILTIN_TYPE]
    }

    async def catalog(request: Request) -> Response:
        return json_response(catalog_body)

    async def list_installed(request: Request) -> Response:
        team_id = request.query_params.get("team_id")
        if not team_id:
            return error(400, "team_id is required")
        rows = await store.team_integrations(runtime.pool, team_id)
        return json_response({"integrations": [describe_row(runtime, row) for row in rows]})

    async def get_one(request: Request) -> Response:
        try:
            row = await owned_row(runtime, request.path_params["id"], request.query_params.get("team_id"))
        except InstallError as exc:
            return json_response(exc.as_dict(), exc.status)
        return json_response(describe_row(runtime, row))

    async def create(request: Request) -> Response:
        body = await parse_body(request, InstallBody)
        if isinstance(body, Response):
            return body
        try:
            record, is_new = await install(
                runtime,
                InstallRequest(
                    body.type,
                    body.team_id,
                    body.config,
                    external_team_id=body.external_team_id,
                    user_id=body.user_id,
                    source="http",
                ),
            )
        except InstallError as exc:
            return json_response(exc.as_dict(), exc.status)
        return json_response({**describe(record), "is_new_install": is_new}, 201 if is_new else 200)

    async def change(request: Request) -> Response:
        body = await parse_body(request, UpdateBody)
        if isinstance(body, Response):
            return body
        try:
            record = await update(
                runtime, request.path_params["id"], body.team_id, body.config, user_id=body.user_id, source="http"
            )
        except InstallError as exc:
            return json_response(exc.as_dict(), exc.status)
        return json_response(describe(record))

    async def remove(request: Request) -> Response:
        team_id = request.query_params.get("team_id")
        if not team_id:
            return error(400, "team_id is required")
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        try:
            await uninstall(runtime, request.path_params["id"], team_id, source="http", force=force)
        except InstallError as exc:
            return json_response(exc.as_dict(), exc.status)
        return json_response({"id": request.path_params["id"], "uninstalled": True})

    def admin(endpoint: Endpoint) -> Endpoint:
        return bearer_only(runtime.settings.admin_token, "admin", endpoint)

    return [
        Route("/integrations/catalog", admin(catalog), methods=["GET"]),
        Route("/integrations", admin(list_installed), methods=["GET"]),
        Route("/integrations", admin(create), methods=["POST"]),
        Route("/integrations/{id}", admin(get_one), methods=["GET"]),
        Route("/integrations/{id}", admin(change), methods=["PATCH"]),
        Route("/integrations/{id}", admin(remove), methods=["DELETE"]),
    ]


class LinkRequest(LinkUserInput):
    team_id: str = Field(min_length=1, max_length=256, description="The team of the user who confirms.")


def link_routes(runtime: Runtime) -> list[BaseRoute]:
    """`POST /links`: the admin HTTP way to confirm a link token (same rules as link_user)."""
    log = get_logger(component="links")

    async def create(request: Request) -> Response:
        body = await parse_body(request, LinkRequest)
        if isinstance(body, Response):
            return body
        payload = LinkUserInput(token=body.token, user_id=body.user_id)
        envelope = Envelope(
            id=f"link:{uuid.uuid4()}",
            type="integration",
            kind="command",
            name="link_user",
            team_id=body.team_id,
            payload=payload.model_dump(),
        )
        ctx = runtime.context(envelope, None)
        try:
            output = await confirm(ctx, payload)
            assert ctx.staged is not None
            await runtime.commit(ctx.staged)
        except LinkRefused as exc:
            log.info("link refused", team_id=body.team_id, status=exc.status, reason=exc.message)
            return error(exc.status, exc.message)
        except asyncpg.UniqueViolationError:  # a concurrent confirmation won: of this token or this account
            return error(409, "this token or this account was linked meanwhile")
        except (asyncpg.PostgresError, OSError) as exc:
            return error(503, f"the link could not be saved ({type(exc).__name__}); try again")
        log.info("link confirmed", team_id=body.team_id, link_id=output.link_id, created=output.created)
        return json_response(output.model_dump(), 201 if output.created else 200)

    admin: Endpoint = bearer_only(runtime.settings.admin_token, "admin", create)
    return [Route("/links", admin, methods=["POST"])]
