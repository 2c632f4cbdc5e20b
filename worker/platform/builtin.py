"""The built-in `integration` type: commands about integrations themselves, published by the
platform (`integration.command.<action>`), such as installing one or linking a user.

Every process that runs a worker registers it (worker/platform/__init__.py); its actions live
here, not in integrations/, and are handed the runtime they act on.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from worker.platform import links
from worker.platform.install_commands import (
    InstallCommand,
    InstallCommands,
    InstalledOutput,
    UninstallCommand,
    UninstalledOutput,
    UpdateCommand,
)
from worker.platform.tool_commands import ListToolsCommand, ListToolsOutput, ToolCommands
from worker.platform.tools import BUILTIN_TYPE as TYPE
from worker.runtime.runtime import Runtime
from worker.sdk.declare import Action, Integration

# The built-in commands: name, description, input and output models (the contract's schemas come
# from here, with or without a runtime to run them).
COMMANDS: tuple[tuple[str, str, type[BaseModel], type[BaseModel]], ...] = (
    (
        "link_user",
        "Link a person's chat account to a platform user, with the signed token from their association link.",
        links.LinkUserInput,
        links.LinkUserOutput,
    ),
    (
        "install",
        "Install (or reconfigure) an integration for the envelope's team: the install path.",
        InstallCommand,
        InstalledOutput,
    ),
    ("update", "Change fields of an installed integration's config.", UpdateCommand, InstalledOutput),
    (
        "uninstall",
        "Uninstall an integration: stop its listeners and watches, delete it.",
        UninstallCommand,
        UninstalledOutput,
    ),
    (
        "list_tools",
        "The agent tools the envelope's team (and a user) can call, in OpenAI or MCP form.",
        ListToolsCommand,
        ListToolsOutput,
    ),
)


def builtin_integration(runtime: Runtime) -> Integration:
    installs = InstallCommands(runtime)
    tools = ToolCommands(runtime)
    runs: dict[str, Any] = {
        "link_user": links.confirm,
        "install": installs.install,
        "update": installs.update,
        "uninstall": installs.uninstall,
        "list_tools": tools.list_tools,
    }
    return Integration(
        type=TYPE,
        name="Platform",
        description="Commands about integrations themselves: install, update, uninstall, link a user, list tools.",
        actions=[
            Action(name, description, input_model, output_model, runs[name], requires_integration=False)
            for name, description, input_model, output_model in COMMANDS
        ],
    )
