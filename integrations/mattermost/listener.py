"""The WebSocket listener: one per installed Mattermost integration, across all workers (the
runtime's services runner holds the lease, worker/services.py).

It authenticates the upgrade with `Authorization: Bearer <token>`, and every `posted` event that
concerns the bot (a direct message, or a post mentioning it; never its own posts) becomes an
envelope on the broker exactly like a webhook, with id `mattermost:<post id>`, so a post seen
twice (a reconnect, or an outgoing webhook too) is handled once. It reconnects with exponential
backoff and jitter (0.5 s up to 30 s, reset once the server says hello); websockets pings every
20 s and drops a connection that stops answering. Posts made while it was not connected are
fetched when it connects again (integrations/mattermost/catch_up.py).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
from websockets.asyncio.client import connect

from integrations.mattermost.api import Me, fetch_me
from integrations.mattermost.catch_up import Gap, missed_posts
from integrations.mattermost.config import MattermostConfig
from schemas.envelope import Envelope
from worker.context import BackgroundContext
from worker.redact import redact

MAX_BACKOFF = 30.0
PUBLISH_ATTEMPTS = 5


class Backoff:
    def __init__(self, first: float = 0.5, most: float = MAX_BACKOFF) -> None:
        self.first, self.most, self.current = first, most, first

    def next(self) -> float:
        delay = self.current * (1 + random.random() * 0.3)
        self.current = min(self.current * 2, self.most)
        return delay

    def reset(self) -> None:
        self.current = self.first


async def run(ctx: BackgroundContext) -> None:
    assert ctx.integration is not None
    config = ctx.config_as(MattermostConfig)
    backoff = Backoff()
    gap = Gap.at_start_up(int(ctx.integration.row.created_at.timestamp() * 1000))
    while True:
        try:
            await _session(ctx, config, backoff, gap)
            ctx.log.info("mattermost websocket closed by the server")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ctx.log.warning("mattermost websocket failed", error=redact(f"{type(exc).__name__}: {exc}"))
        finally:
            gap.session_ended()
        await asyncio.sleep(backoff.next())


async def _session(ctx: BackgroundContext, config: MattermostConfig, backoff: Backoff, gap: Gap) -> None:
    me = await fetch_me(ctx.http, config)
    async with connect(
        config.websocket_url,
        additional_headers=config.headers(),
        open_timeout=10,
        ping_interval=20,
        ping_timeout=20,
        close_timeout=2,
        max_size=4 * 1024 * 1024,
    ) as socket:
        async for raw in socket:
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            gap.alive()
            if event.get("event") == "hello":
                backoff.reset()
                ctx.log.info("mattermost websocket connected", bot_user_id=me.id)
                if gap.start is not None:  # live posts wait in the socket meanwhile
                    await _catch_up(ctx, config, me, gap.start)
                    gap.closed()
            elif event.get("event") == "posted":
                envelope = posted_envelope(ctx, me, event.get("data") or {})
                if envelope is not None:
                    await _publish(ctx, envelope)


async def _catch_up(ctx: BackgroundContext, config: MattermostConfig, me: Me, since: int) -> None:
    missed = await missed_posts(ctx.http, config, me, since)
    for data in missed:
        envelope = posted_envelope(ctx, me, data, source="catch_up")
        if envelope is not None:
            await _publish(ctx, envelope)
    if missed:
        ctx.log.info("mattermost posts caught up", posts=len(missed))


def _json(value: Any, default: Any) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return default
    return value if value is not None else default


def posted_envelope(
    ctx: BackgroundContext, me: Me, data: dict[str, Any], *, source: str = "websocket"
) -> Envelope | None:
    """The envelope of a `posted` event that concerns the bot, else None."""
    assert ctx.integration is not None
    post = _json(data.get("post"), {})  # a JSON-encoded string
    mentions = _json(data.get("mentions"), [])
    if not isinstance(post, dict) or not post.get("id") or post.get("user_id") == me.id:
        return None
    channel_type = data.get("channel_type")
    if channel_type != "D" and me.id not in mentions:
        return None
    return Envelope(
        id=f"mattermost:{post['id']}",
        type="mattermost",
        kind="webhook",
        name="posted",
        integration_id=ctx.integration.id,
        team_id=ctx.integration.team_id,
        payload={
            "source": source,
            "post": post,
            "channel_type": channel_type,
            "channel_name": data.get("channel_name"),
            "sender_name": data.get("sender_name"),
            "mentions": mentions if isinstance(mentions, list) else [],
            "bot_user_id": me.id,
            "bot_username": me.username,
        },
    )


async def _publish(ctx: BackgroundContext, envelope: Envelope) -> None:
    """Publish (confirmed); the broker down a moment is waited out, longer drops the socket so the
    reconnect starts afresh."""
    for attempt in range(PUBLISH_ATTEMPTS):
        try:
            await ctx.publish(envelope)
            return
        except Exception as exc:
            if attempt == PUBLISH_ATTEMPTS - 1:
                raise
            ctx.log.warning("publishing a mattermost post failed; retrying", error=type(exc).__name__)
            await asyncio.sleep(0.2 * 2**attempt)
