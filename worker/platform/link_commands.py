"""`integration.command.list_logs`, `.list_links`, `.update_link` and `.unlink_user`: what a team's
users see and change of an integration (user_links.py), as broker commands of the built-in
`integration` type. The team is the envelope's `team_id`.

A change (`update_link`, `unlink_user`) is staged in the command's own unit of work: the link's
new settings, what the integration's hook stages with them (commands for the real work), the
event and the log row commit with the command's id, once. A refusal (invalid input, per field;
an unknown integration or link, or another team's) is the command's answer (`refused`); the
provider or the database unavailable is a transient failure, retried like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from worker.platform.install_commands import guarded, team_of
from worker.platform.user_links import (
    LinkQuery,
    LinksPage,
    LinkView,
    LogQuery,
    LogsPage,
    Unlinked,
    change_link_config,
    list_links,
    read_logs,
    unlink,
)
from worker.runtime.runtime import Runtime
from worker.sdk.context import Context


class ListLogsCommand(LogQuery):
    integration_id: str


class ListLinksCommand(LinkQuery):
    integration_id: str


class UpdateLinkCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    integration_id: str
    link_id: str
    config: dict[str, Any] = Field(description="The link settings to change (the integration's link model).")


class UnlinkCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    integration_id: str
    link_id: str
    force: bool = Field(default=False, description="Unlink even when revoking at the provider fails.")


@dataclass(frozen=True)
class LinkCommands:
    runtime: Runtime

    async def list_logs(self, ctx: Context, request: ListLogsCommand) -> LogsPage:
        query = LogQuery.model_validate(request.model_dump(exclude={"integration_id"}))
        return await guarded(read_logs(self.runtime, request.integration_id, team_of(ctx), query))

    async def list_links(self, ctx: Context, request: ListLinksCommand) -> LinksPage:
        query = LinkQuery.model_validate(request.model_dump(exclude={"integration_id"}))
        return await guarded(list_links(self.runtime, request.integration_id, team_of(ctx), query))

    async def update_link(self, ctx: Context, request: UpdateLinkCommand) -> LinkView:
        assert ctx.staged is not None
        return await guarded(
            change_link_config(
                self.runtime,
                request.integration_id,
                team_of(ctx),
                request.link_id,
                request.config,
                source="command",
                staged=ctx.staged,
                cause=ctx.envelope.id,
            )
        )

    async def unlink_user(self, ctx: Context, request: UnlinkCommand) -> Unlinked:
        assert ctx.staged is not None
        return await guarded(
            unlink(
                self.runtime,
                request.integration_id,
                team_of(ctx),
                request.link_id,
                source="command",
                force=request.force,
                staged=ctx.staged,
                cause=ctx.envelope.id,
            )
        )
