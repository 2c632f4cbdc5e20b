"""The registry checks itself when it is built: a broken integration fails start-up with a clear
message naming it, not at the first message."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, RootModel

from integrations.registry import REGISTRY
from tests.tools import probe
from worker.platform import contract
from worker.sdk import Action, Context, Handler, Integration, Lifecycle, Registry, RegistryError


class In(BaseModel):
    text: str


class Out(BaseModel):
    id: int


class Client:
    pass


class NotExportable(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: Client  # an arbitrary class: no JSON Schema describes it


async def run(_ctx: Context, _request: Any) -> Out:
    return Out(id=1)


async def handle(_ctx: Context) -> None:
    return None


def sync_run(_ctx: Context, _request: Any) -> Out:
    return Out(id=1)


def problems(*integrations: Integration) -> str:
    with pytest.raises(RegistryError) as error:
        Registry(list(integrations))
    return str(error.value)


def test_a_sound_registry_builds_and_derives_a_command_per_action() -> None:
    registry = Registry([Integration("acme", "Acme", "x", actions=[Action("send", "Send.", In, Out, run)])])

    route = registry.route("acme", "command", "send")
    assert isinstance(route, Action) and route.name == "send"


def test_the_contract_carries_every_actions_schemas_and_the_tool_answers() -> None:
    schemas = contract.json_schemas(Registry([*REGISTRY, probe.integration]))

    assert set(schemas["command.github.command.comment.input"]["properties"]) == {"repository", "issue_number", "body"}
    assert set(schemas["command.telegram.command.send_message.output"]["properties"]) == {"message_id", "chat_id"}
    assert "command.integration.command.install.input" in schemas
    assert set(schemas["tool.reply"]["properties"]) == {"ok", "status", "output", "error", "fields"}
    call_request = schemas["tool.call_request"]
    assert "team_id" in call_request["properties"] and "required" not in call_request  # a tool token may supply it


def test_types_and_action_names_must_be_unique() -> None:
    message = problems(
        Integration(
            "acme", "Acme", "x", actions=[Action("send", "Send.", In, Out, run), Action("send", "Again.", In, Out, run)]
        ),
        Integration("acme", "Acme 2", "y"),
    )

    assert "integration 'acme': action 'send' is declared twice" in message
    assert "type 'acme' is declared twice" in message


def test_handler_kinds_and_names_must_be_known() -> None:
    message = problems(
        Integration(
            "acme",
            "Acme",
            "x",
            handlers=[Handler("hook", "push", handle), Handler("webhook", "bad name!", handle)],  # type: ignore[arg-type]
        )
    )

    assert "handler kind 'hook' is not one of webhook, command, event" in message
    assert "handler name 'bad name!' is not a valid name" in message


def test_models_must_export_json_schema_and_tools_take_objects() -> None:
    message = problems(
        Integration(
            "acme",
            "Acme",
            "x",
            config=NotExportable,
            actions=[
                Action("listing", "List.", RootModel[list[int]], Out, run),  # type: ignore[arg-type]
                Action("Send-Now", "", In, Out, sync_run),  # type: ignore[arg-type]
            ],
            lifecycle=Lifecycle(validate=sync_run),  # type: ignore[arg-type]
        )
    )

    assert "integration 'acme': config model has no JSON Schema" in message
    assert "action 'listing' input must be a JSON object (tools take objects)" in message
    assert "action name 'Send-Now' must match [a-z][a-z0-9_]*" in message
    assert "action 'Send-Now' needs a description" in message
    assert "action 'Send-Now' must be an async function" in message
    assert "lifecycle hook validate must be an async function" in message


def test_a_tool_name_must_fit_function_calling_limits() -> None:
    message = problems(
        Integration(
            "a-very-long-integration-type-name",
            "Long",
            "x",
            actions=[Action("and_an_even_longer_action_name_too", "x", In, Out, run)],
        )
    )

    assert (
        "tool name 'a-very-long-integration-type-name_and_an_even_longer_action_name_too' is longer than 64" in message
    )


def test_a_broken_integration_fails_start_up_with_its_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "integrations"],
        env={**os.environ, "IW_REGISTRY": "tests.tools.broken_registry:REGISTRY"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "invalid integration registry" in result.stderr
    assert "integration 'broken': action name 'Send-Now' must match [a-z][a-z0-9_]*" in result.stderr
