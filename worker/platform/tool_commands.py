"""`integration.command.list_tools`: the tool listing over the broker, for an agent service that
talks only to the broker (calls are the actions' own commands, `<type>.command.<action>`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.platform.tools import available_tools, render
from worker.runtime.runtime import Runtime
from worker.sdk.context import Context
from worker.sdk.errors import ActionRefused


class ListToolsCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, description="List the tools that act as this user too.")
    format: Literal["openai", "mcp"] = "openai"


class ListToolsOutput(BaseModel):
    tools: list[dict[str, Any]]


@dataclass(frozen=True)
class ToolCommands:
    runtime: Runtime

    async def list_tools(self, ctx: Context, request: ListToolsCommand) -> ListToolsOutput:
        if not ctx.envelope.team_id:
            raise ActionRefused("the envelope's team_id is required: whose tools to list")
        tools = await available_tools(self.runtime, ctx.envelope.team_id, request.user_id)
        return ListToolsOutput(tools=render(tools, request.format))
