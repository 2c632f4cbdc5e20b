"""The platform layer: what the service offers on top of the runtime. The install lifecycle,
agent tools (HTTP, MCP, broker), account links, OAuth flows, attachments, and the built-in
`integration` commands; each is handed the runtime it works on."""

from __future__ import annotations

from typing import Any

from worker.platform.builtin import builtin_integration
from worker.platform.install import InstallError, InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.sdk.errors import InstallRejected
from worker.sdk.records import IntegrationRecord


def attach(runtime: Runtime) -> Runtime:
    """Give the runtime the platform's built-in commands and its install path (an OAuth callback
    installs through `ctx.install`). Before the runtime starts; returns it."""
    runtime.add_builtin(builtin_integration(runtime))

    async def installer(type_: str, team_id: str, user_id: str | None, config: dict[str, Any]) -> IntegrationRecord:
        try:
            record, _ = await install(runtime, InstallRequest(type_, team_id, config, user_id=user_id, source="oauth"))
        except InstallError as exc:
            raise InstallRejected(exc.message) from None
        return record

    runtime.backend.installer = installer
    return runtime
