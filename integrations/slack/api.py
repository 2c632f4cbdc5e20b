"""Slack's Web API: JSON over HTTPS as the bot, with Slack's error rules (integrations/slack/errors.py)."""

from __future__ import annotations

from typing import Any

import orjson

from integrations.slack import tokens
from integrations.slack.config import SlackSettings
from integrations.slack.errors import classify
from worker.sdk import Context, IntegrationError
from worker.sdk import call as outbound_call

USER_NAME_TTL = 3600.0


async def call(
    ctx: Context, method: str, body: dict[str, Any], *, form: bool = False, attempts: int = 3
) -> dict[str, Any]:
    """POST a Web API method as the bot; the answer's JSON (ok: true). Read methods
    (`conversations.history`, ...) take no JSON body: `form=True` sends the arguments as a form.
    `attempts=1`: a transient failure is not retried here but by the worker (a new run)."""
    settings = ctx.settings_as(SlackSettings)
    token = await tokens.bot_token(ctx)
    headers = {"Authorization": f"Bearer {token}"}
    if form:
        content: dict[str, Any] = {"data": {k: _form_value(v) for k, v in body.items() if v is not None}}
    else:
        content = {"content": orjson.dumps(body)}
        headers["Content-Type"] = "application/json; charset=utf-8"
    response = await outbound_call(
        ctx.http,
        "POST",
        f"{settings.api_url}/{method}",
        headers=headers,
        classify=classify,
        attempts=attempts,
        **content,
    )
    answer: dict[str, Any] = response.json()
    return answer


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def user_name(ctx: Context, user: str) -> str | None:
    """The person's display name (users.info), cached; None if Slack will not say."""
    cached = ctx.cache.get(f"user-name:{user}")
    if cached is not None:
        return str(cached) or None
    try:
        body = await call(ctx, "users.info", {"user": user})
    except IntegrationError as exc:
        ctx.log.info("slack user name unavailable", error=str(exc))
        return None
    info = body.get("user") or {}
    profile = info.get("profile") or {}
    name = profile.get("display_name") or profile.get("real_name") or info.get("real_name") or info.get("name") or ""
    ctx.cache.set(f"user-name:{user}", name, USER_NAME_TTL)
    return str(name) or None
