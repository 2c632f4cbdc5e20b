"""`integration.command.install`, `.update` and `.uninstall`: the install path (worker/install.py)
as broker commands of the built-in `integration` type. The team is the envelope's `team_id`.

A refusal (invalid config, per field; the live service refused it; no such integration) is
the command's answer (`refused`); a service that could not be reached is a transient failure,
retried like any other.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from worker.context import Context
from worker.errors import ActionRefused, TransientError

_TRANSIENT_STATUSES = (409, 502, 503)


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


def _team(ctx: Context) -> str:
    if not ctx.envelope.team_id:
        raise ActionRefused("the envelope's team_id is required: whose integration this is")
    return ctx.envelope.team_id


def _runtime(ctx: Context) -> Any:
    return ctx.extensions["runtime"]


async def _guarded(work: Any) -> Any:
    from worker.install import InstallError  # noqa: PLC0415 - install imports the runtime, which imports this

    try:
        return await work
    except InstallError as exc:
        if exc.status in _TRANSIENT_STATUSES:
            raise TransientError(exc.message) from None
        raise ActionRefused(exc.message, exc.fields or None) from None


async def install_command(ctx: Context, request: InstallCommand) -> InstalledOutput:
    from worker.install import InstallRequest, install, public_config  # noqa: PLC0415

    team_id = _team(ctx)
    record, is_new = await _guarded(
        install(
            _runtime(ctx),
            InstallRequest(
                request.type,
                team_id,
                request.config,
                external_team_id=request.external_team_id,
                user_id=request.user_id,
                source="command",
            ),
        )
    )
    return InstalledOutput(
        integration_id=record.id,
        type=record.type,
        team_id=record.team_id,
        is_new_install=is_new,
        config=public_config(record.config),
    )


async def update_command(ctx: Context, request: UpdateCommand) -> InstalledOutput:
    from worker.install import public_config, update  # noqa: PLC0415

    record = await _guarded(
        update(
            _runtime(ctx), request.integration_id, _team(ctx), request.config, user_id=request.user_id, source="command"
        )
    )
    return InstalledOutput(
        integration_id=record.id,
        type=record.type,
        team_id=record.team_id,
        is_new_install=False,
        config=public_config(record.config),
    )


async def uninstall_command(ctx: Context, request: UninstallCommand) -> UninstalledOutput:
    from worker.install import uninstall  # noqa: PLC0415

    await _guarded(uninstall(_runtime(ctx), request.integration_id, _team(ctx), source="command", force=request.force))
    return UninstalledOutput(integration_id=request.integration_id)
