"""Push channels: Google POSTs (no body, no signature) to `/webhooks/google-calendar` when a
watched calendar changes.

A channel is registered with a random secret token (`events.watch`); only its SHA-256 is
stored. The ingress finds the channel row by `X-Goog-Channel-ID`, compares the token
(`X-Goog-Channel-Token`) in constant time and checks `X-Goog-Resource-ID`; (channel id,
message number) is the dedup key; the first message (`sync`) is answered without work.
Channels are not renewed by Google: an hourly schedule publishes
`google-calendar.command.renew_channel` for every linked calendar whose newest channel
expires within `channel_renew_before_seconds` (or that has none); the new channel is
registered before the old ones are stopped (a short overlap; the dedup and the incremental
sync make a double notification harmless). A new link gets its channel right away; the
first renewal also records the calendar's sync token (no events are reported for what was
already there).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime

import orjson
from pydantic import BaseModel, ConfigDict

from integrations.google_calendar.changes import baseline
from integrations.google_calendar.client import calendar, events_path
from integrations.google_calendar.config import CalendarConfig, CalendarSettings
from integrations.google_common.links import link_by_id, links_of
from integrations.google_common.settings import GoogleSettings
from schemas.envelope import Envelope
from worker.sdk import Accept, Context, IntegrationError, Reply, WebhookRejected, WebhookRequest, redact


class RenewChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    link_id: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def webhook_url(ctx: Context) -> str:
    settings = ctx.settings_as(CalendarSettings)
    return settings.webhook_url or f"{ctx.runtime_settings.public_url.rstrip('/')}/webhooks/google-calendar"


def renew_envelope(link_id: str, integration_id: str, team_id: str | None, suffix: str) -> Envelope:
    return Envelope(
        id=f"google-calendar:channel:{link_id}:{suffix}",
        type="google-calendar",
        kind="command",
        name="renew_channel",
        integration_id=integration_id,
        team_id=team_id,
        payload={"link_id": link_id},
    )


# --- ingress ---------------------------------------------------------------------------------------------


async def receive(request: WebhookRequest, ctx: Context) -> Accept | Reply:
    channel_id = request.headers.get("x-goog-channel-id")
    state = request.headers.get("x-goog-resource-state")
    number = request.headers.get("x-goog-message-number", "")
    if not channel_id or not state:
        raise WebhookRejected(400, "X-Goog-Channel-ID and X-Goog-Resource-State are required")
    row = await ctx.unscoped_db.fetchrow(
        "SELECT link_id, integration_id, team_id, resource_id, token_hash FROM google_calendar_channels WHERE id = $1",
        channel_id,
    )
    if row is None:
        raise WebhookRejected(404, "unknown channel")
    token = request.headers.get("x-goog-channel-token", "")
    if not token or not hmac.compare_digest(token_hash(token).encode(), str(row["token_hash"]).encode()):
        raise WebhookRejected(401, "missing or wrong X-Goog-Channel-Token")
    resource = request.headers.get("x-goog-resource-id")
    if resource is not None and resource != row["resource_id"]:
        raise WebhookRejected(401, "X-Goog-Resource-ID does not match the channel")
    if state == "sync":  # the channel's first message: nothing changed yet
        return Reply(200, orjson.dumps({"status": "ok"}))
    return Accept(
        name="notification",
        delivery_id=f"{channel_id}:{number}",
        integration_id=row["integration_id"],
        team_id=row["team_id"],
        payload={"link_id": row["link_id"], "channel_id": channel_id, "state": state, "message_number": number},
    )


# --- renewing --------------------------------------------------------------------------------------------


async def on_renew_channel(ctx: Context) -> None:
    """`google-calendar.command.renew_channel`: a new channel, then the old ones stopped."""
    command = ctx.payload_as(RenewChannel)
    config = ctx.config_as(CalendarConfig)
    settings = ctx.settings_as(CalendarSettings)
    link = await link_by_id(ctx, command.link_id)
    if link is None or not link.active:
        ctx.log.info("channel not renewed: the link is gone or needs reconnecting", link_id=command.link_id)
        return
    async with ctx.exclusive(f"calendar:{link.id}"):
        state = await ctx.db.fetchrow(
            "SELECT sync_token FROM google_calendar_sync WHERE team_id = $1 AND link_id = $2", link.id
        )
        if state is None or not state["sync_token"]:
            await baseline(ctx, link, config.calendar_id)
        old = await ctx.db.fetch(
            "SELECT id, resource_id FROM google_calendar_channels WHERE team_id = $1 AND link_id = $2", link.id
        )
        if not config.push_notifications:  # turned off: stop what is still watching
            for channel in old:
                await stop_channel(ctx, link.id, channel["id"], channel["resource_id"])
                ctx.db.write("DELETE FROM google_calendar_channels WHERE team_id = $1 AND id = $2", channel["id"])
            return
        channel_id = uuid.uuid4().hex
        token = secrets.token_urlsafe(32)
        body = (
            await calendar(
                ctx,
                link.id,
                "POST",
                events_path(config.calendar_id) + "/watch",
                json={
                    "id": channel_id,
                    "type": "web_hook",
                    "address": webhook_url(ctx),
                    "token": token,
                    "params": {"ttl": str(settings.channel_ttl_seconds)},
                },
            )
        ).json()
        expires = datetime.fromtimestamp(int(body["expiration"]) / 1000, UTC)
        ctx.db.write(
            """INSERT INTO google_calendar_channels (team_id, id, link_id, integration_id, calendar_id, resource_id,
                   token_hash, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            channel_id,
            link.id,
            ctx.integration_id,
            config.calendar_id,
            str(body["resourceId"]),
            token_hash(token),
            expires,
        )
        for channel in old:
            await stop_channel(ctx, link.id, channel["id"], channel["resource_id"])
            ctx.db.write("DELETE FROM google_calendar_channels WHERE team_id = $1 AND id = $2", channel["id"])
        ctx.record(
            "info", "channel_renewed", f"watching {link.external_user_id}'s calendar until {expires.isoformat()}"
        )


async def stop_channel(ctx: Context, link_id: str, channel_id: str, resource_id: str) -> None:
    """Best effort: a channel we fail to stop expires on its own, and its row is gone."""
    try:
        await calendar(
            ctx,
            link_id,
            "POST",
            "/channels/stop",
            json={"id": channel_id, "resourceId": resource_id},
            ok_statuses=(404,),
        )
    except (IntegrationError, OSError) as exc:
        ctx.log.warning("could not stop a calendar channel", channel_id=channel_id, error=redact(str(exc)))


async def renew_due(ctx: Context) -> None:
    """The hourly schedule: a renew command per linked calendar whose newest channel expires soon
    (or that has none), where push notifications are on."""
    settings = ctx.settings_as(CalendarSettings)
    pushing = {r.id for r in await ctx.integrations.active() if r.config_as(CalendarConfig).push_notifications}
    links = [link for link in await ctx.links.across_teams() if link.integration_id in pushing]
    covered = {
        r["link_id"]
        for r in await ctx.unscoped_db.fetch(
            """SELECT DISTINCT link_id FROM google_calendar_channels
               WHERE link_id = ANY($1::text[]) AND expires_at > now() + make_interval(secs => $2)""",
            [link.id for link in links],
            float(settings.channel_renew_before_seconds),
        )
    }
    due = [link for link in links if link.id not in covered]
    bucket = datetime.now(UTC).strftime("%Y%m%d%H")
    for link in due:
        ctx.publish(
            "command",
            "renew_channel",
            {"link_id": link.id},
            id=f"google-calendar:channel:{link.id}:{bucket}",
            integration_id=link.integration_id,
            team_id=link.team_id,
        )
    if due:
        ctx.log.info("calendar channels due for renewal", count=len(due))


async def after_link(ctx: Context, link_id: str, _settings: GoogleSettings) -> None:
    assert ctx.integration is not None
    await ctx.publish_now(renew_envelope(link_id, ctx.integration.id, ctx.team_id, f"link-{uuid.uuid4().hex}"))


async def post_install(ctx: Context) -> None:
    for link in await links_of(ctx):
        ctx.publish(
            "command", "renew_channel", {"link_id": link.id}, id=f"google-calendar:channel:{link.id}:{ctx.envelope.id}"
        )


async def pre_uninstall(ctx: Context) -> None:
    rows = await ctx.db.fetch(
        "SELECT id, link_id, resource_id FROM google_calendar_channels WHERE team_id = $1 AND integration_id = $2",
        ctx.integration_id,
    )
    for row in rows:
        await stop_channel(ctx, row["link_id"], row["id"], row["resource_id"])
