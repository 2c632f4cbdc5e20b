"""A test integration whose action acts as a user: `probe_whoami` answers the acting user's link."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from worker.sdk import Action, Context, Integration


class WhoamiInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WhoamiOutput(BaseModel):
    user_id: str
    external_user_id: str


async def whoami(ctx: Context, _request: WhoamiInput) -> WhoamiOutput:
    assert ctx.user_link is not None
    return WhoamiOutput(user_id=ctx.user_link.user_id, external_user_id=ctx.user_link.external_user_id)


integration = Integration(
    type="probe",
    name="Probe",
    description="Answers who a call acts for.",
    actions=[
        Action(
            "whoami",
            "Say which linked account the call acts as.",
            WhoamiInput,
            WhoamiOutput,
            whoami,
            needs_user_link=True,
        )
    ],
)
