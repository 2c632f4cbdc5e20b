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
from worker.platform.link_commands import (
    LinkCommands,
    ListLinksCommand,
    ListLogsCommand,
    UnlinkCommand,
    UpdateLinkCommand,
)
from worker.platform.tool_commands import ListToolsCommand, ListToolsOutput, ToolCommands
from worker.platform.tools import BUILTIN_TYPE as TYPE
from worker.platform.user_links import LinksPage, LinkView, LogsPage, Unlinked
from worker.runtime.runtime import Runtime
from worker.sdk.declare import Action, Integration
from worker.sdk.keys import per_integration, unordered

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
    (
        "list_logs",
        "An integration's log rows, newest first: by level, time range and key, a page at a time.",
        ListLogsCommand,
        LogsPage,
    ),
    ("list_links", "The users linked to an integration (never a token).", ListLinksCommand, LinksPage),
    (
        "update_link",
        "Change a linked user's own settings (Calendar's syncEvents, Gmail's filters).",
        UpdateLinkCommand,
        LinkView,
    ),
    (
        "unlink_user",
        "Remove a user's link: their tokens revoked at the provider where it allows, the link deleted.",
        UnlinkCommand,
        Unlinked,
    ),
)


def builtin_integration(runtime: Runtime) -> Integration:
    installs = InstallCommands(runtime)
    tools = ToolCommands(runtime)
    user_links = LinkCommands(runtime)
    runs: dict[str, Any] = {
        "link_user": links.confirm,
        "install": installs.install,
        "update": installs.update,
        "uninstall": installs.uninstall,
        "list_tools": tools.list_tools,
        "list_logs": user_links.list_logs,
        "list_links": user_links.list_links,
        "update_link": user_links.update_link,
        "unlink_user": user_links.unlink_user,
    }
    return Integration(
        type=TYPE,
        name="Platform",
        description=(
            "Commands about integrations themselves: install, update, uninstall, link a user, list tools;"
            " their logs and linked users."
        ),
        actions=[
            Action(
                name,
                description,
                input_model,
                output_model,
                runs[name],
                requires_integration=False,
                # what changes a team's integrations runs in the order sent; reads, side by side
                key=unordered if name.startswith("list_") else per_integration,
            )
            for name, description, input_model, output_model in COMMANDS
        ],
    )
