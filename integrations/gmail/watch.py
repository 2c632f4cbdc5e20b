"""`users.watch`: Gmail publishes a mailbox's changes to our Pub/Sub topic while a watch lives
(7 days). A watch is set when a user links their mailbox, at install for the links already
there, and renewed daily: an hourly schedule (one worker at a time) publishes
`gmail.command.renew_watch` for every mailbox renewed more than `watch_renew_after_seconds`
ago, never renewed, or expiring within a day. Uninstalling stops the watches; a user unlinking
stops theirs and revokes their grant.

The first watch also sets the history cursor (its `historyId`); a renewal never moves an
existing cursor, which only moves when mail is processed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from integrations.gmail.client import gmail, refresher
from integrations.gmail.config import GmailSettings
from integrations.google_common.links import link_by_id, links_of
from integrations.google_common.revoke import revoke
from integrations.google_common.settings import GoogleSettings
from schemas.envelope import Envelope
from worker.sdk import Context, IntegrationError, Link, PermanentError, redact

MESSAGE_RETENTION_DAYS = 30


class RenewWatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    link_id: str


def renew_envelope(link_id: str, integration_id: str, team_id: str | None, suffix: str) -> Envelope:
    return Envelope(
        id=f"gmail:watch:{link_id}:{suffix}",
        type="gmail",
        kind="command",
        name="renew_watch",
        integration_id=integration_id,
        team_id=team_id,
        payload={"link_id": link_id},
    )


async def on_renew_watch(ctx: Context) -> None:
    """`gmail.command.renew_watch`."""
    command = ctx.payload_as(RenewWatch)
    link = await link_by_id(ctx, command.link_id)
    if link is None or not link.active:
        ctx.log.info("watch not renewed: the link is gone or needs reconnecting", link_id=command.link_id)
        return
    settings = ctx.settings_as(GmailSettings)
    if not settings.pubsub_topic:
        raise PermanentError("IW_GMAIL_PUBSUB_TOPIC is not set: Gmail has nowhere to publish changes")
    body = (
        await gmail(
            ctx,
            link.id,
            "POST",
            "/watch",
            json={"topicName": settings.pubsub_topic, "labelIds": ["INBOX"], "labelFilterBehavior": "INCLUDE"},
        )
    ).json()
    expires = datetime.fromtimestamp(int(body["expiration"]) / 1000, UTC)
    ctx.db.write(
        """INSERT INTO gmail_mailboxes AS m (team_id, link_id, integration_id, email, history_id, watch_expires_at,
               watch_renewed_at)
           VALUES ($1, $2, $3, $4, $5::numeric, $6, now())
           ON CONFLICT (link_id) DO UPDATE SET history_id = COALESCE(m.history_id, EXCLUDED.history_id),
               watch_expires_at = EXCLUDED.watch_expires_at, watch_renewed_at = now(), email = EXCLUDED.email,
               updated_at = now()""",
        link.id,
        ctx.integration_id,
        link.external_user_id,
        str(body["historyId"]),
        expires,
    )
    ctx.db.write(
        """DELETE FROM gmail_messages WHERE team_id = $1 AND link_id = $2
             AND processed_at < now() - make_interval(days => $3)""",
        link.id,
        MESSAGE_RETENTION_DAYS,
    )
    ctx.record(
        "info", "watch_renewed", f"watching {link.external_user_id} until {expires.isoformat()}", user_link_id=link.id
    )


async def renew_due(ctx: Context) -> None:
    """The hourly schedule: a renew command per mailbox that is due (renewed long ago, never, or
    expiring within a day)."""
    settings = ctx.settings_as(GmailSettings)
    links = await ctx.links.across_teams()
    watched = {
        r["link_id"]: r
        for r in await ctx.unscoped_db.fetch(
            """SELECT link_id, watch_renewed_at < now() - make_interval(secs => $2)
                      OR watch_expires_at < now() + interval '1 day' AS due
               FROM gmail_mailboxes WHERE link_id = ANY($1::text[]) AND watch_renewed_at IS NOT NULL""",
            [link.id for link in links],
            settings.watch_renew_after_seconds,
        )
    }
    due = [link for link in links if link.id not in watched or watched[link.id]["due"]]
    bucket = datetime.now(UTC).strftime("%Y%m%d%H")
    for link in due:
        ctx.publish(
            "command",
            "renew_watch",
            {"link_id": link.id},
            id=f"gmail:watch:{link.id}:{bucket}",
            integration_id=link.integration_id,
            team_id=link.team_id,
        )
    if due:
        ctx.log.info("gmail watches due for renewal", count=len(due))


async def poll_quiet(ctx: Context) -> None:
    """The hourly catch-up: Pub/Sub notifications can be late or lost, so a mailbox not synced for
    `poll_after_seconds` gets a sync anyway (nothing new: one history call)."""
    settings = ctx.settings_as(GmailSettings)
    links = {link.id: link for link in await ctx.links.across_teams()}
    quiet = await ctx.unscoped_db.fetch(
        """SELECT link_id FROM gmail_mailboxes
           WHERE link_id = ANY($1::text[]) AND history_id IS NOT NULL
             AND coalesce(last_synced_at, watch_renewed_at, updated_at) < now() - make_interval(secs => $2)""",
        list(links),
        settings.poll_after_seconds,
    )
    bucket = datetime.now(UTC).strftime("%Y%m%d%H")
    for row in quiet:
        link = links[row["link_id"]]
        ctx.publish(
            "command",
            "sync",
            {"link_id": link.id},
            id=f"gmail:sync:{link.id}:poll-{bucket}",
            integration_id=link.integration_id,
            team_id=link.team_id,
        )
    if quiet:
        ctx.log.info("quiet gmail mailboxes synced", count=len(quiet))


async def after_link(ctx: Context, link_id: str, _settings: GoogleSettings) -> None:
    """A mailbox was just linked: watch it now (through a command, so it gets retries)."""
    assert ctx.integration is not None
    await ctx.publish_now(renew_envelope(link_id, ctx.integration.id, ctx.team_id, f"link-{uuid.uuid4().hex}"))


async def post_install(ctx: Context) -> None:
    for link in await links_of(ctx):
        ctx.publish("command", "renew_watch", {"link_id": link.id}, id=f"gmail:watch:{link.id}:{ctx.envelope.id}")


async def pre_uninstall(ctx: Context) -> None:
    """Stop the watches; an error here must not keep the integration installed (Gmail ends
    a watch on its own within 7 days)."""
    for link in await links_of(ctx):
        try:
            await gmail(ctx, link.id, "POST", "/stop")
        except (IntegrationError, OSError) as exc:
            ctx.log.warning("could not stop a Gmail watch", link_id=link.id, error=redact(str(exc)))


async def on_unlink(ctx: Context, link: Link) -> bool:
    """A user unlinks: stop their mailbox's watch (best effort: it ends within 7 days anyway), then
    revoke their grant at Google. The mailbox's rows go with the link."""
    if link.active:
        try:
            await gmail(ctx, link.id, "POST", "/stop")
        except (IntegrationError, OSError) as exc:
            ctx.log.warning("could not stop a Gmail watch", link_id=link.id, error=redact(str(exc)))
    return await revoke(ctx, link, refresher(ctx))
