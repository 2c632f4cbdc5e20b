"""The contract as data: the registry's catalog and every JSON Schema other services code against."""

from __future__ import annotations

from typing import Any

from schemas.envelope import Envelope, routing_key
from schemas.events import EVENT_TYPES, ResultEvent
from schemas.rows import IntegrationLogRow, IntegrationRow, ParkedMessage, UserLinkRow
from schemas.tools import ToolCallAnswer, ToolCallRequest, ToolReply
from worker.platform.builtin import COMMANDS as BUILTIN_COMMANDS
from worker.platform.tools import BUILTIN_TYPE
from worker.sdk.declare import tool_name
from worker.sdk.registry import Registry


def catalog(registry: Registry) -> list[dict[str, Any]]:
    """Every integration type: what a dashboard needs to render config, link and install forms.
    Secret fields are `"format": "password", "writeOnly": true` in the config schema."""
    items = []
    for integration in sorted(registry, key=lambda i: i.type):
        items.append(
            {
                "type": integration.type,
                "name": integration.name,
                "description": integration.description,
                "config_schema": integration.config.model_json_schema(),
                # what a linked user may change of their own link (PATCH /integrations/{id}/links/{link_id})
                "link_config_schema": (
                    integration.user_links.config.model_json_schema() if integration.user_links.config else None
                ),
                "webhook": f"/webhooks/{integration.type}" if integration.webhook else None,
                "oauth": f"/oauth/{integration.type}/start" if integration.oauth else None,
                "handles": sorted(routing_key(integration.type, h.kind, h.name) for h in integration.handlers),
                "actions": [
                    {
                        "name": action.name,
                        "description": action.description,
                        "command": routing_key(integration.type, "command", action.name),
                        "tool": tool_name(integration.type, action.name),
                        "needs_user_link": action.needs_user_link,
                        "input_schema": action.input.model_json_schema(),
                        "output_schema": action.output.model_json_schema(),
                    }
                    for action in integration.actions
                ],
            }
        )
    return items


def json_schemas(registry: Registry) -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {
        "envelope.v1": Envelope.model_json_schema(),
        "row.integration": IntegrationRow.model_json_schema(),
        "row.integration_user_link": UserLinkRow.model_json_schema(),
        "row.integration_log": IntegrationLogRow.model_json_schema(),
        "parked_message": ParkedMessage.model_json_schema(),
        "tool.reply": ToolReply.model_json_schema(),
        "tool.call_request": ToolCallRequest.model_json_schema(),
        "tool.call_answer": ToolCallAnswer.model_json_schema(),
    }
    for name, data in sorted(EVENT_TYPES.items()):
        schemas[f"event.{name}"] = ResultEvent[data].model_json_schema()  # type: ignore[valid-type]
    commands = [(BUILTIN_TYPE, name, input_, output) for name, _, input_, output in BUILTIN_COMMANDS]
    commands += [(i.type, a.name, a.input, a.output) for i in registry if i.type != BUILTIN_TYPE for a in i.actions]
    for type_, name, input_model, output_model in commands:
        key = routing_key(type_, "command", name)
        schemas[f"command.{key}.input"] = input_model.model_json_schema()
        schemas[f"command.{key}.output"] = output_model.model_json_schema()
    return schemas
