"""What a team's users see and change of an installed integration, over HTTP, behind
`Authorization: Bearer IW_ADMIN_TOKEN` (the platform's backend calls it for its dashboard):

GET    /integrations/{id}/logs?team_id=[&level=][&since=][&until=][&key=][&limit=][&cursor=]
                                          log rows, newest first (`level` repeated or comma-separated)
GET    /integrations/{id}/links?team_id=[&user_id=][&limit=][&offset=]
                                          the users linked to it, never a token
PATCH  /integrations/{id}/links/{link_id} {team_id, config}: a user's own link settings
DELETE /integrations/{id}/links/{link_id}?team_id=[&force=true]
                                          unlink: the provider's tokens revoked, the link gone

400 per field for bad input, 404 for an integration or link that is unknown or another team's.
Each runs worker/platform/user_links.py, as the CLI and the `integration` commands do.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from worker.platform.http import Endpoint, bearer_only, error, json_response, parse_body
from worker.platform.install import InstallError
from worker.platform.user_links import LinkQuery, LogQuery, change_link_config, list_links, read_logs, unlink
from worker.runtime.runtime import Runtime
from worker.sdk.errors import field_errors

Q = TypeVar("Q", bound=BaseModel)


class LinkConfigBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team_id: str = Field(min_length=1, max_length=256)
    config: dict[str, Any] = Field(description="The settings to change; the others stay.")


def _query(request: Request, model: type[Q], *, lists: tuple[str, ...] = ()) -> tuple[str, Q] | Response:
    """The team and the rest of the query string as `model`, else the 400 answer, per field."""
    params: dict[str, Any] = {k: v for k, v in request.query_params.items() if k != "team_id"}
    for name in lists:
        values = [part for value in request.query_params.getlist(name) for part in value.split(",") if part]
        if values:
            params[name] = values
    fields: dict[str, list[str]] = {}
    team_id = request.query_params.get("team_id")
    if not team_id:
        fields["team_id"] = ["Field required"]
    try:
        query = model.model_validate(params)
    except ValidationError as exc:
        fields.update(field_errors(exc))
    if fields or not team_id:
        return error(400, "invalid request", fields=fields)
    return team_id, query


def link_admin_routes(runtime: Runtime) -> list[BaseRoute]:
    async def logs(request: Request) -> Response:
        asked = _query(request, LogQuery, lists=("level",))
        if isinstance(asked, Response):
            return asked
        team_id, query = asked
        try:
            page = await read_logs(runtime, request.path_params["id"], team_id, query)
        except InstallError as exc:
            return json_response(exc.as_dict(), exc.status)
        return json_response(page.model_dump(mode="json"))

    async def links(request: Request) -> Response:
        asked = _query(request, LinkQuery)
        if isinstance(asked, Response):
            return asked
        team_id, query = asked
        try:
            page = await list_links(runtime, request.path_params["id"], team_id, query)
        except InstallError as exc:
            return json_response(exc.as_dict(), exc.status)
        return json_response(page.model_dump(mode="json"))

    async def change(request: Request) -> Response:
        body = await parse_body(request, LinkConfigBody)
        if isinstance(body, Response):
            return body
        try:
            link = await change_link_config(
                runtime,
                request.path_params["id"],
                body.team_id,
                request.path_params["link_id"],
                body.config,
                source="http",
            )
        except InstallError as exc:
            return json_response(exc.as_dict(), exc.status)
        return json_response(link.model_dump(mode="json"))

    async def remove(request: Request) -> Response:
        team_id = request.query_params.get("team_id")
        if not team_id:
            return error(400, "invalid request", fields={"team_id": ["Field required"]})
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        try:
            done = await unlink(
                runtime, request.path_params["id"], team_id, request.path_params["link_id"], source="http", force=force
            )
        except InstallError as exc:
            return json_response(exc.as_dict(), exc.status)
        return json_response(done.model_dump(mode="json"))

    def admin(endpoint: Endpoint) -> Endpoint:
        return bearer_only(runtime.settings.admin_token, "admin", endpoint)

    return [
        Route("/integrations/{id}/logs", admin(logs), methods=["GET"]),
        Route("/integrations/{id}/links", admin(links), methods=["GET"]),
        Route("/integrations/{id}/links/{link_id}", admin(change), methods=["PATCH"]),
        Route("/integrations/{id}/links/{link_id}", admin(remove), methods=["DELETE"]),
    ]
