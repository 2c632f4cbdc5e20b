"""Slack's Web API: JSON over HTTPS as the bot, with Slack's error rules (integrations/slack/errors.py)."""

from __future__ import annotations

from typing import Any

import orjson

from integrations.slack import tokens
from integrations.slack.config import SlackSettings
from integrations.slack.errors import classify
from worker.context import Context
from worker.outbound import call as outbound_call


async def call(ctx: Context, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a Web API method as the bot; the answer's JSON (ok: true)."""
    settings = ctx.settings_as(SlackSettings)
    token = await tokens.bot_token(ctx)
    response = await outbound_call(
        ctx.http,
        "POST",
        f"{settings.api_url}/{method}",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"},
        classify=classify,
    )
    answer: dict[str, Any] = response.json()
    return answer
