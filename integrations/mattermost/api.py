"""Mattermost's REST API v4 as the bot (PROVIDERS §2.3): bearer token; 429 (Retry-After) and 5xx
are transient, other 4xx permanent (the generic rule)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from integrations.mattermost.config import MattermostConfig
from worker.sdk import Context
from worker.sdk import call as outbound_call

ME_TTL = 3600.0


@dataclass(frozen=True)
class Me:
    id: str
    username: str


async def request(http: httpx.AsyncClient, config: MattermostConfig, method: str, path: str, **kwargs: Any) -> Any:
    response = await outbound_call(http, method, f"{config.api}{path}", headers=config.headers(), **kwargs)
    return response.json() if response.content else None


async def fetch_me(http: httpx.AsyncClient, config: MattermostConfig) -> Me:
    body = await request(http, config, "GET", "/users/me")
    return Me(id=str(body["id"]), username=str(body.get("username") or ""))


async def me(ctx: Context) -> Me:
    """The bot's own user, cached per integration and config."""
    assert ctx.integration is not None
    config = ctx.config_as(MattermostConfig)
    key = f"me:{ctx.integration.id}:{ctx.integration.row.updated_at.isoformat()}"
    found: Me = await ctx.cache.get_or_set(key, ME_TTL, lambda: fetch_me(ctx.http, config))
    return found


async def call(ctx: Context, method: str, path: str, **kwargs: Any) -> Any:
    return await request(ctx.http, ctx.config_as(MattermostConfig), method, path, **kwargs)
