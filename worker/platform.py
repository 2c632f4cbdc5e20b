"""The built-in `integration` type: commands about integrations themselves, published by the
platform (`integration.command.<action>`), such as installing one or linking a user.

It is part of every registry; its actions live in the runtime, not in integrations/.
"""

from __future__ import annotations

from worker import install_commands as commands
from worker import links, tool_commands
from worker.integration import Action, Integration

PLATFORM = Integration(
    type="integration",
    name="Platform",
    description="Commands about integrations themselves: install, update, uninstall, link a user, list tools.",
    actions=[
        Action(
            "link_user",
            "Link a person's chat account to a platform user, with the signed token from their association link.",
            links.LinkUserInput,
            links.LinkUserOutput,
            links.confirm,
            requires_integration=False,
        ),
        Action(
            "install",
            "Install (or reconfigure) an integration for the envelope's team: the install path.",
            commands.InstallCommand,
            commands.InstalledOutput,
            commands.install_command,
            requires_integration=False,
        ),
        Action(
            "update",
            "Change fields of an installed integration's config.",
            commands.UpdateCommand,
            commands.InstalledOutput,
            commands.update_command,
            requires_integration=False,
        ),
        Action(
            "uninstall",
            "Uninstall an integration: stop its listeners and watches, delete it.",
            commands.UninstallCommand,
            commands.UninstalledOutput,
            commands.uninstall_command,
            requires_integration=False,
        ),
        Action(
            "list_tools",
            "The agent tools the envelope's team (and a user) can call, in OpenAI or MCP form.",
            tool_commands.ListToolsCommand,
            tool_commands.ListToolsOutput,
            tool_commands.list_tools_command,
            requires_integration=False,
        ),
    ],
)
