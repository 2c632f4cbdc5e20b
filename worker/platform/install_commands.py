"""`integration.command.install`, `.update` and `.uninstall`: the install path (install.py)
as broker commands of the built-in `integration` type. The team is the envelope's `team_id`.

A refusal (invalid config, per field; the live service refused it; no such integration) is
the command's answer (`refused`); a service that could not be reached is a transient failure,
retried like any other.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from worker.platform.install import InstallError, InstallRequest, install, public_config, uninstall, update
from worker.runtime.runtime import Runtime
from worker.sdk.context import Context
from worker.sdk.errors import ActionRefused, TransientError
from worker.sdk.records import IntegrationRecord

T = TypeVar("T")


class InstallCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="The integration type, e.g. `github`.")
    config: dict[str, Any] = Field(default_factory=dict, description="The config (its JSON Schema is in the catalog).")
    external_team_id: str | None = Field(default=None, description="The provider account, when the config lacks it.")
    user_id: str | None = Field(default=None, description="The platform user installing it.")


class UpdateCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    integration_id: str
    config: dict[str, Any] = Field(description='Fields to change; a secret sent as "[set]" is kept.')
    user_id: str | None = None


class UninstallCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    integration_id: str
    force: bool = Field(default=False, description="Uninstall even when stopping or revoking at the provider fails.")


class InstalledOutput(BaseModel):
    integration_id: str
    type: str
    team_id: str
    is_new_install: bool
    config: dict[str, Any] = Field(description="The config as reads show it: secrets only say they are set.")


class UninstalledOutput(BaseModel):
    integration_id: str
    uninstalled: bool = True


def team_of(ctx: Context) -> str:
    if not ctx.envelope.team_id:
        raise ActionRefused("the envelope's team_id is required: whose integration this is")
    return ctx.envelope.team_id


async def guarded(work: Awaitable[T]) -> T:
    """The platform's answer as a command's: what may succeed later (a lock held, the database or
    the provider away) is retried; the rest is refused, with its fields."""
    try:
        return await work
    except InstallError as exc:
        if exc.again:
            raise TransientError(exc.message) from None
        raise ActionRefused(exc.message, exc.fields or None) from None


def _installed(record: IntegrationRecord, is_new: bool) -> InstalledOutput:
    return InstalledOutput(
        integration_id=record.id,
        type=record.type,
        team_id=record.team_id,
        is_new_install=is_new,
        config=public_config(record.config),
    )


@dataclass(frozen=True)
class InstallCommands:
    """The actions of `integration.command.install`, `.update` and `.uninstall`."""

    runtime: Runtime

    async def install(self, ctx: Context, request: InstallCommand) -> InstalledOutput:
        record, is_new = await guarded(
            install(
                self.runtime,
                InstallRequest(
                    request.type,
                    team_of(ctx),
                    request.config,
                    external_team_id=request.external_team_id,
                    user_id=request.user_id,
                    source="command",
                ),
            )
        )
        return _installed(record, is_new)

    async def update(self, ctx: Context, request: UpdateCommand) -> InstalledOutput:
        record = await guarded(
            update(
                self.runtime,
                request.integration_id,
                team_of(ctx),
                request.config,
                user_id=request.user_id,
                source="command",
            )
        )
        return _installed(record, False)

    async def uninstall(self, ctx: Context, request: UninstallCommand) -> UninstalledOutput:
        await guarded(
            uninstall(self.runtime, request.integration_id, team_of(ctx), source="command", force=request.force)
        )
        return UninstalledOutput(integration_id=request.integration_id)
