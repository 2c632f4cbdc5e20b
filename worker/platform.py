"""The built-in `integration` type: commands about integrations themselves, published by the
platform (`integration.command.<action>`), such as installing one or linking a user.

It is part of every registry; its actions live in the runtime, not in integrations/.
"""

from __future__ import annotations

from worker.integration import Integration

PLATFORM = Integration(
    type="integration",
    name="Platform",
    description="Commands about integrations themselves: install, uninstall, link a user.",
    actions=[],
)
