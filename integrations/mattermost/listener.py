"""The WebSocket listener: one per installed Mattermost integration, across all workers (the
runtime's services runner holds the lease, worker/runtime/services.py).

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
from typing import Any

import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_exponential_jitter,
)
from websockets.asyncio.client import connect

from integrations.mattermost.api import Me, fetch_me
from integrations.mattermost.catch_up import Gap, missed_posts
from integrations.mattermost.config import MattermostConfig
from schemas.envelope import Envelope
from worker.sdk import Context, redact

MAX_BACKOFF = 30.0
PUBLISH_ATTEMPTS = 5


class SessionEnded(Exception):
    """The socket closed or failed: connect again, after the backoff."""


class Backoff:
    """0.5 s doubling to 30 s, with jitter; back to the start once the server said hello."""

    def __init__(self) -> None:
        self.wait = wait_exponential_jitter(multiplier=0.5, max=MAX_BACKOFF, jitter=0.3)
        self.hello = False

    def __call__(self, state: RetryCallState) -> float:
        if self.hello:
            self.hello = False
            state.attempt_number = 1
        return float(self.wait(state))


async def run(ctx: Context) -> None:
    assert ctx.integration is not None
    config = ctx.config_as(MattermostConfig)
    backoff = Backoff()
    gap = Gap.at_start_up(int(ctx.integration.row.created_at.timestamp() * 1000))
    async for attempt in AsyncRetrying(retry=retry_if_exception_type(SessionEnded), wait=backoff):
        with attempt:
            try:
                await _session(ctx, config, backoff, gap)
                ctx.log.info("mattermost websocket closed by the server")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ctx.log.warning("mattermost websocket failed", error=redact(f"{type(exc).__name__}: {exc}"))
            finally:
                gap.session_ended()
            raise SessionEnded


async def _session(ctx: Context, config: MattermostConfig, backoff: Backoff, gap: Gap) -> None:
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
                backoff.hello = True
                ctx.log.info("mattermost websocket connected", bot_user_id=me.id)
                if gap.start is not None:  # live posts wait in the socket meanwhile
                    await _catch_up(ctx, config, me, gap.start)
                    gap.closed()
            elif event.get("event") == "posted":
                envelope = posted_envelope(ctx, me, event.get("data") or {})
                if envelope is not None:
                    await _publish(ctx, envelope)


async def _catch_up(ctx: Context, config: MattermostConfig, me: Me, since: int) -> None:
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


def posted_envelope(ctx: Context, me: Me, data: dict[str, Any], *, source: str = "websocket") -> Envelope | None:
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


async def _publish(ctx: Context, envelope: Envelope) -> None:
    """Publish (confirmed); the broker down a moment is waited out (0.2 s doubling, 5 tries),
    longer drops the socket so the reconnect starts afresh."""

    def retrying(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        ctx.log.warning("publishing a mattermost post failed; retrying", error=type(error).__name__)

    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(PUBLISH_ATTEMPTS),
        wait=wait_exponential(multiplier=0.2),
        before_sleep=retrying,
        reraise=True,
    ):
        with attempt:
            await ctx.publish_now(envelope)
