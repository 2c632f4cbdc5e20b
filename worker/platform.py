"""The built-in `integration` type: commands about integrations themselves, published by the
platform (`integration.command.<action>`), such as installing one or linking a user.

It is part of every registry; its actions live in the runtime, not in integrations/.
"""

from __future__ import annotations

from worker import links
from worker.integration import Action, Integration

PLATFORM = Integration(
    type="integration",
    name="Platform",
    description="Commands about integrations themselves: install, uninstall, link a user.",
    actions=[
        Action(
            "link_user",
            "Link a person's chat account to a platform user, with the signed token from their association link.",
            links.LinkUserInput,
            links.LinkUserOutput,
            links.confirm,
            requires_integration=False,
        ),
    ],
)
