"""Agent tools, derived from the integrations' actions: listing, formats, and the call path shared
by the HTTP API, the MCP server and the CLI.

Tool `<type>_<action>` = the action's name, description and input/output models. For a team (and
optionally a user) the tools listed are those of integrations the team has installed and active;
an action that acts as a user (`needs_user_link`) is listed only for a user with an active link
to that integration. When a team has several integrations of one type (two GitHub installations),
the tool takes an `integration_id` argument naming one of them.

A call is checked here before anything is published (the tool exists, the team has it, the user
has the link, the input is valid: else a `ToolCallError` with per-field errors), then published
as the command `<type>.command.<action>` with `reply_to`, and answered by the worker: the same
retries, logs, inbox and team scoping as every command. Its id derives from (team, tool,
idempotency key): the same key again answers the first result without running anything.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import JsonSchemaMode

from schemas.envelope import Envelope
from schemas.tools import SOURCE_HEADER, USER_HEADER, ToolReply
from worker.core.ids import derived_id
from worker.platform.tool_rpc import ReplyQueue
from worker.runtime import results as action_results
from worker.runtime.runtime import Runtime
from worker.sdk.declare import Action, Integration, tool_name
from worker.sdk.errors import field_errors
from worker.sdk.registry import Registry

BUILTIN_TYPE = "integration"  # the platform's own commands are no agent tools

INTEGRATION_ARGUMENT = "integration_id"


@dataclass(frozen=True)
class ToolDef:
    """A tool as the registry declares it, before any team is involved."""

    name: str
    integration: Integration
    action: Action[Any, Any]

    @property
    def type(self) -> str:
        return self.integration.type

    @property
    def description(self) -> str:
        return f"{self.integration.name}: {self.action.description}"

    def input_schema(self) -> dict[str, Any]:
        """Shared: copy before changing it."""
        return _json_schema(self.action.input, "validation")

    def output_schema(self) -> dict[str, Any]:
        return _json_schema(self.action.output, "serialization")


_SCHEMAS: dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]] = {}


def _json_schema(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
    """A model's JSON Schema, built once per process (pydantic builds it anew on every call)."""
    schema = _SCHEMAS.get((model, mode))
    if schema is None:
        schema = _SCHEMAS[(model, mode)] = model.model_json_schema(mode=mode)
    return schema


@functools.lru_cache(maxsize=16)
def tool_defs(registry: Registry) -> dict[str, ToolDef]:
    """Every tool the registry declares, by name (the built-in platform type has none for agents);
    built once per registry (it does not change once loaded)."""
    return {
        tool_name(integration.type, action.name): ToolDef(tool_name(integration.type, action.name), integration, action)
        for integration in registry
        if integration.type != BUILTIN_TYPE
        for action in integration.actions
    }


@dataclass(frozen=True)
class Choice:
    integration_id: str
    label: str


@dataclass(frozen=True)
class AvailableTool:
    """A tool as one team (and user) sees it: which of the team's integrations can run it."""

    definition: ToolDef
    integrations: tuple[Choice, ...]

    @property
    def name(self) -> str:
        return self.definition.name

    def input_schema(self) -> dict[str, Any]:
        schema = self.definition.input_schema()
        if len(self.integrations) > 1:
            schema = dict(schema)
            properties = dict(schema.get("properties", {}))
            properties[INTEGRATION_ARGUMENT] = {
                "type": "string",
                "enum": [c.integration_id for c in self.integrations],
                "description": "Which installed integration to use: "
                + "; ".join(f"{c.integration_id} = {c.label}" for c in self.integrations),
            }
            schema["properties"] = properties
            schema["required"] = [*schema.get("required", []), INTEGRATION_ARGUMENT]
        return schema

    def openai(self) -> dict[str, Any]:
        """OpenAI function calling (Chat Completions `tools` entry)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.definition.description,
                "parameters": self.input_schema(),
            },
        }

    def mcp(self) -> dict[str, Any]:
        """MCP `Tool` (as in `tools/list`)."""
        return {
            "name": self.name,
            "title": f"{self.definition.integration.name}: {self.definition.action.name.replace('_', ' ')}",
            "description": self.definition.description,
            "inputSchema": self.input_schema(),
            "outputSchema": self.definition.output_schema(),
        }


Format = Literal["openai", "mcp"]


def render(tools: list[AvailableTool], format_: Format) -> list[dict[str, Any]]:
    return [tool.openai() if format_ == "openai" else tool.mcp() for tool in tools]


_TEAM_INTEGRATIONS = """
    SELECT i.id, i.type, i.name, i.external_team_id,
           $2::text IS NOT NULL AND EXISTS (
               SELECT 1 FROM integration_user_link l
               WHERE l.integration_id = i.id AND l.user_id = $2 AND l.status = 'active') AS linked
    FROM integrations i
    WHERE i.team_id = $1 AND i.status = 'active'
    ORDER BY i.type, i.created_at, i.id"""


async def available_tools(runtime: Runtime, team_id: str, user_id: str | None = None) -> list[AvailableTool]:
    """The tools this team (and user) can call now, in one query."""
    definitions = tool_defs(runtime.registry)
    records = await runtime.pool.fetch(_TEAM_INTEGRATIONS, team_id, user_id)
    choices: dict[str, list[Choice]] = {}
    for definition in definitions.values():
        for record in records:
            if record["type"] != definition.type or (definition.action.needs_user_link and not record["linked"]):
                continue
            label = record["name"] + (f" ({record['external_team_id']})" if record["external_team_id"] else "")
            choices.setdefault(definition.name, []).append(Choice(record["id"], label))
    return [AvailableTool(definitions[name], tuple(found)) for name, found in sorted(choices.items())]


# --- calling ----------------------------------------------------------------------------------------


class ToolCallError(Exception):
    """A call refused before anything was published: HTTP status, message, per-field errors."""

    def __init__(self, status: int, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields

    def as_dict(self) -> dict[str, Any]:
        """The answer's body, the same over HTTP, MCP and the CLI."""
        return {"error": self.message, **({"fields": self.fields} if self.fields else {})}


CallStatus = Literal["succeeded", "refused", "failed", "pending"]


@dataclass(frozen=True)
class PreparedCall:
    call_id: str
    tool: AvailableTool
    team_id: str
    user_id: str | None
    integration_id: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class CallOutcome:
    call_id: str
    status: CallStatus
    reply: ToolReply | None  # None while pending

    def answer(self) -> dict[str, Any]:
        body: dict[str, Any] = {"call_id": self.call_id, "status": self.status, "ok": self.status == "succeeded"}
        if self.reply is not None:
            body.update(action_results.reply_body(self.reply))
            body["status"] = self.status
        return body


def call_id(team_id: str, user_id: str | None, name: str, idempotency_key: str) -> str:
    """A call's id: the same key of two users (or of a user and the team) is two calls."""
    parts = (
        ("tool-call", team_id, name, idempotency_key)
        if user_id is None
        else ("tool-call", team_id, name, idempotency_key, "user", user_id)
    )
    return "tool:" + derived_id(*parts)


async def prepare(
    runtime: Runtime,
    *,
    team_id: str,
    user_id: str | None,
    name: str,
    arguments: Mapping[str, Any],
    idempotency_key: str | None,
) -> PreparedCall:
    """Check a call against what the team (and user) may do, and its input against the model."""
    definition = tool_defs(runtime.registry).get(name)
    if definition is None:
        raise ToolCallError(404, f"unknown tool {name!r}")
    if definition.action.needs_user_link and not user_id:
        raise ToolCallError(400, f"{name} acts as a user: user_id is required")
    tool = next((t for t in await available_tools(runtime, team_id, user_id) if t.name == name), None)
    if tool is None:
        if definition.action.needs_user_link:
            raise ToolCallError(
                403,
                f"{name} is not available: the team has no active {definition.integration.name} "
                "integration, or the user has not linked an account to it",
            )
        raise ToolCallError(
            404, f"{name} is not available: the team has no active {definition.integration.name} integration"
        )
    arguments = dict(arguments)
    chosen = arguments.pop(INTEGRATION_ARGUMENT, None)
    ids = [c.integration_id for c in tool.integrations]
    if chosen is None and len(ids) > 1:
        raise ToolCallError(
            422,
            "this team has several integrations for this tool: say which",
            {INTEGRATION_ARGUMENT: ["Field required"]},
        )
    if chosen is not None and chosen not in ids:
        raise ToolCallError(422, "no such integration for this tool", {INTEGRATION_ARGUMENT: ["not one of the team's"]})
    try:
        definition.action.input.model_validate(arguments)
    except ValidationError as exc:
        raise ToolCallError(422, "invalid input", field_errors(exc)) from None
    return PreparedCall(
        call_id=call_id(team_id, user_id, name, idempotency_key or uuid.uuid4().hex),
        tool=tool,
        team_id=team_id,
        user_id=user_id,
        integration_id=chosen or ids[0],
        arguments=arguments,
    )


async def execute(
    runtime: Runtime, replies: ReplyQueue, call: PreparedCall, *, wait_seconds: float, source: str
) -> CallOutcome:
    """Answer from the stored result when this call id ran before; else publish the command and
    wait for the worker's answer (`pending` after `wait_seconds`)."""
    kept = await action_results.get(runtime.pool, call.call_id)
    if kept is not None and kept.belongs_to(call.team_id, call.user_id):
        if kept.other_input(call.arguments):
            raise ToolCallError(409, "this idempotency key was used for a call with other input")
        if kept.status != "failed":
            return CallOutcome(call.call_id, kept.status, kept.reply)
    definition = call.tool.definition
    headers = {SOURCE_HEADER: source}
    if call.user_id:
        headers[USER_HEADER] = call.user_id
    envelope = Envelope(
        id=call.call_id,
        type=definition.type,
        kind="command",
        name=definition.action.name,
        integration_id=call.integration_id,
        team_id=call.team_id,
        headers=headers,
        payload=call.arguments,
    )
    body = await replies.request(runtime.outgoing(envelope), wait_seconds=wait_seconds)
    if body is None:
        return CallOutcome(call.call_id, "pending", None)
    reply = ToolReply.model_validate(body)
    return CallOutcome(call.call_id, reply.status, reply)


async def stored_outcome(
    runtime: Runtime, call_id_: str, team_id: str, user_id: str | None = None
) -> CallOutcome | None:
    """A call's stored answer, for its team (and its user, when `user_id` is given)."""
    stored = await action_results.get(runtime.pool, call_id_)
    if stored is None or not stored.belongs_to(team_id, user_id):
        return None
    return CallOutcome(call_id_, stored.status, stored.reply)


class ToolGateway:
    """The call path for callers in this process: one reply queue, opened at the first call."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.replies = ReplyQueue(runtime.broker, runtime.topology.prefix)

    async def list(self, team_id: str, user_id: str | None = None) -> list[AvailableTool]:
        return await available_tools(self.runtime, team_id, user_id)

    async def call(
        self,
        *,
        team_id: str,
        user_id: str | None,
        name: str,
        arguments: Mapping[str, Any],
        idempotency_key: str | None,
        source: str,
        wait_seconds: float | None = None,
    ) -> CallOutcome:
        prepared = await prepare(
            self.runtime,
            team_id=team_id,
            user_id=user_id,
            name=name,
            arguments=arguments,
            idempotency_key=idempotency_key,
        )
        return await execute(
            self.runtime,
            self.replies,
            prepared,
            wait_seconds=wait_seconds if wait_seconds is not None else self.runtime.settings.tool_timeout,
            source=source,
        )

    async def result(self, call_id_: str, team_id: str, user_id: str | None = None) -> CallOutcome | None:
        return await stored_outcome(self.runtime, call_id_, team_id, user_id)

    async def close(self) -> None:
        await self.replies.close()


def encode(value: Any) -> str:
    return orjson.dumps(value).decode()
