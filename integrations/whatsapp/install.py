"""The install check: a team either has a number of its own, or uses the deployment's shared one.

Refused: no number while no shared number is set (IW_WHATSAPP_SHARED_NUMBER), and the shared
number given as a team's own (it would take every message to it from the other teams). A number
of its own belongs to one team (its rows are unique per number); a team has at most one install
on the shared number (one per team without a number of its own). Nothing is checked against
Twilio.
"""

from __future__ import annotations

from integrations.whatsapp.config import WhatsappConfig, WhatsappSettings
from worker.sdk import Context, InstallRejected


async def validate(ctx: Context) -> None:
    config = ctx.config_as(WhatsappConfig)
    shared = ctx.settings_as(WhatsappSettings).shared_number
    if config.number is None and shared is None:
        raise InstallRejected("give the team's WhatsApp number: no shared number is set (IW_WHATSAPP_SHARED_NUMBER)")
    if config.number is not None and config.number == shared:
        raise InstallRejected(f"{config.number} is the deployment's shared number: install without a number to use it")
