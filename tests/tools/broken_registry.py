"""A registry with a broken integration: start-up must fail with a clear message (see test_registry_check)."""

from __future__ import annotations

from pydantic import BaseModel

from worker.sdk import Action, Context, Integration, Registry


class Anything(BaseModel):
    pass


async def run(_ctx: Context, _request: Anything) -> Anything:
    return Anything()


REGISTRY = Registry(
    [
        Integration(
            type="broken", name="Broken", description="x", actions=[Action("Send-Now", "x", Anything, Anything, run)]
        )
    ]
)
