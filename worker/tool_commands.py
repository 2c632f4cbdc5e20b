"""`integration.command.list_tools`: the tool listing over the broker, for an agent service that
talks only to the broker (calls are the actions' own commands, `<type>.command.<action>`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.context import Context
from worker.errors import ActionRefused


class ListToolsCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, description="List the tools that act as this user too.")
    format: Literal["openai", "mcp"] = "openai"


class ListToolsOutput(BaseModel):
    tools: list[dict[str, Any]]


async def list_tools_command(ctx: Context, request: ListToolsCommand) -> ListToolsOutput:
    from worker.tools import available_tools, render  # noqa: PLC0415 - tools imports the registry, which imports this

    if not ctx.envelope.team_id:
        raise ActionRefused("the envelope's team_id is required: whose tools to list")
    tools = await available_tools(ctx.extensions["runtime"], ctx.envelope.team_id, request.user_id)
    return ListToolsOutput(tools=render(tools, request.format))
