"""Mail intake: a Pub/Sub notification ("mailbox X changed") becomes, per linked mailbox, a
`gmail.command.sync` that reads what is new and publishes `task.intake` for the mail that passes.

One sync per mailbox runs at a time (a lease held until its outcome commits), so two close
notifications cannot both take the same mail in, and the daily cap is counted exactly.

    history.list from the stored cursor (historyTypes=messageAdded, labelId=INBOX, every page)
      404, or no cursor yet: a bounded recent sync (the newest INBOX mail of the last days;
      the new cursor is the mailbox's historyId read *before* listing, so nothing slips by)
    messages.get for each new message not seen before (gmail_messages), at most
      `max_messages_per_sync` per run (a follow-up sync goes on from where this one stopped)
    skip promotions and social, apply the team's filters and the user's own, the daily cap; emit task.intake
    stage: a gmail_messages row per message looked at, and the cursor moved forward,
      committed with the message id in one transaction, so a crash before the commit
      leaves the cursor where it was and the redelivered sync reads the same mail again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from integrations.gmail.client import gmail
from integrations.gmail.config import GmailConfig, GmailSettings, link_filters
from integrations.gmail.filters import skip_reason
from integrations.gmail.mime import DecodedEmail, decode_message
from integrations.google_common.links import link_by_id
from schemas.events import TaskIntake
from worker.sdk import Context, Link, ProviderError

FETCH_CONCURRENCY = 8
MAX_BODY_CHARS = 20_000


class LinkRef(BaseModel):
    link_id: str
    integration_id: str
    team_id: str


class Notification(BaseModel):
    """What the ingress publishes for a verified push: the mailbox, and the links it has."""

    model_config = ConfigDict(extra="ignore")

    email_address: str
    history_id: str
    pubsub_message_id: str
    links: list[LinkRef] = Field(default_factory=list)


class SyncCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    link_id: str
    history_id: str | None = Field(default=None, description="The notified historyId, for the logs.")


@dataclass(frozen=True)
class Candidate:
    message_id: str
    thread_id: str | None


@dataclass(frozen=True)
class Plan:
    candidates: list[Candidate]
    new_cursor: int
    more: bool
    mode: str  # "history" or "recent"


async def on_notification(ctx: Context) -> None:
    """`gmail.webhook.notification`: one sync command per linked mailbox (one per team)."""
    notification = ctx.payload_as(Notification)
    for link in notification.links:
        ctx.publish(
            "command",
            "sync",
            {"link_id": link.link_id, "history_id": notification.history_id},
            id=f"gmail:sync:{link.link_id}:{notification.pubsub_message_id}",
            integration_id=link.integration_id,
            team_id=link.team_id,
        )


async def on_sync(ctx: Context) -> None:
    """`gmail.command.sync`."""
    command = ctx.payload_as(SyncCommand)
    link = await link_by_id(ctx, command.link_id)
    if link is None:
        ctx.log.info("sync for a link that no longer exists", link_id=command.link_id)
        return
    if not link.active:
        ctx.log.info("sync skipped: the link needs reconnecting", link_id=link.id)
        return
    async with ctx.exclusive(f"mailbox:{link.id}"):
        await sync_mailbox(ctx, link)


async def sync_mailbox(ctx: Context, link: Link) -> None:
    settings = ctx.settings_as(GmailSettings)
    config = ctx.config_as(GmailConfig)
    cursor_text = await ctx.db.fetchval(
        "SELECT history_id::text FROM gmail_mailboxes WHERE team_id = $1 AND link_id = $2", link.id
    )
    cursor = int(cursor_text) if cursor_text else None
    plan: Plan | None = None
    if cursor is not None:
        try:
            plan = await _from_history(ctx, link, cursor, settings.max_messages_per_sync)
        except ProviderError as exc:
            if exc.status != 404:
                raise
            ctx.record(
                "warning",
                "history_expired",
                f"{link.external_user_id}: history cursor expired; recent sync",
                user_link_id=link.id,
            )
    if plan is None:
        plan = await _recent(ctx, link, settings)
    seen = await _already_seen(ctx, link, [c.message_id for c in plan.candidates])
    todo = [c for c in plan.candidates if c.message_id not in seen]
    accepted = await _take_in(ctx, link, config, todo)
    ctx.db.write(
        """INSERT INTO gmail_mailboxes AS m (team_id, link_id, integration_id, email, history_id, last_synced_at)
           VALUES ($1, $2, $3, $4, $5::numeric, now())
           ON CONFLICT (link_id) DO UPDATE SET history_id = GREATEST(m.history_id, EXCLUDED.history_id),
               last_synced_at = now(), updated_at = now()""",
        link.id,
        ctx.integration_id,
        link.external_user_id,
        str(plan.new_cursor),
    )
    if plan.more:
        ctx.publish("command", "sync", {"link_id": link.id}, id=f"gmail:sync:{link.id}:after:{plan.new_cursor}")
    ctx.log.info(
        "mailbox synced",
        link_id=link.id,
        mode=plan.mode,
        new=len(todo),
        accepted=accepted,
        cursor=str(plan.new_cursor),
        more=plan.more,
    )


async def _from_history(ctx: Context, link: Link, cursor: int, budget: int) -> Plan:
    records: list[dict[str, object]] = []
    current = cursor
    page_token: str | None = None
    while True:
        params = {"startHistoryId": str(cursor), "historyTypes": "messageAdded", "labelId": "INBOX", "maxResults": 500}
        if page_token:
            params["pageToken"] = page_token
        body = (await gmail(ctx, link.id, "GET", "/history", params=params)).json()
        records.extend(body.get("history") or [])
        if body.get("historyId"):
            current = max(current, int(body["historyId"]))
        page_token = body.get("nextPageToken")
        if not page_token:
            break
    records.sort(key=lambda record: int(str(record.get("id", 0))))
    candidates: list[Candidate] = []
    listed: set[str] = set()
    for index, record in enumerate(records):
        found = []
        for added in record.get("messagesAdded") or []:  # type: ignore[attr-defined]
            message = added.get("message") or {}
            message_id = message.get("id")
            if not message_id or message_id in listed or "INBOX" not in (message.get("labelIds") or ["INBOX"]):
                continue
            found.append(Candidate(str(message_id), message.get("threadId")))
        if candidates and len(candidates) + len(found) > budget:
            # Stop before this record; the next run starts after the last record taken whole.
            return Plan(candidates, int(str(records[index - 1]["id"])), True, "history")
        for candidate in found:
            listed.add(candidate.message_id)
            candidates.append(candidate)
    return Plan(candidates, current, False, "history")


async def _recent(ctx: Context, link: Link, settings: GmailSettings) -> Plan:
    profile = (await gmail(ctx, link.id, "GET", "/profile")).json()
    current = int(profile["historyId"])  # read first: later mail also shows in the next history.list
    listing = (
        await gmail(
            ctx,
            link.id,
            "GET",
            "/messages",
            params={
                "labelIds": "INBOX",
                "maxResults": min(settings.recent_sync_limit, settings.max_messages_per_sync),
                "q": f"newer_than:{settings.recent_sync_days}d",
            },
        )
    ).json()
    messages = list(reversed(listing.get("messages") or []))  # oldest first
    return Plan([Candidate(str(m["id"]), m.get("threadId")) for m in messages], current, False, "recent")


async def _already_seen(ctx: Context, link: Link, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    rows = await ctx.db.fetch(
        "SELECT message_id FROM gmail_messages WHERE team_id = $1 AND link_id = $2 AND message_id = ANY($3::text[])",
        link.id,
        ids,
    )
    return {r["message_id"] for r in rows}


async def _accepted_today(ctx: Context, link: Link) -> int:
    count: int = await ctx.db.fetchval(
        """SELECT count(*) FROM gmail_messages WHERE team_id = $1 AND link_id = $2 AND outcome = 'accepted'
             AND processed_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'""",
        link.id,
    )
    return count


async def _fetch(ctx: Context, link: Link, candidate: Candidate, slots: asyncio.Semaphore) -> DecodedEmail | None:
    async with slots:
        response = await gmail(
            ctx,
            link.id,
            "GET",
            f"/messages/{quote(candidate.message_id)}",
            params={"format": "full"},
            ok_statuses=(404,),
        )
    if response.status_code == 404:  # deleted before we got to it
        return None
    return decode_message(response.json())


async def _take_in(ctx: Context, link: Link, config: GmailConfig, todo: list[Candidate]) -> int:
    cap = config.daily_intake_cap
    own = link_filters(link)
    taken = await _accepted_today(ctx, link)
    accepted = capped = 0
    slots = asyncio.Semaphore(FETCH_CONCURRENCY)
    start = 0
    while start < len(todo):
        # Fetch no more at once than could still be taken in: mail past the cap is not fetched.
        size = FETCH_CONCURRENCY if taken >= cap else max(1, min(FETCH_CONCURRENCY, cap - taken))
        chunk = todo[start : start + size]
        start += len(chunk)
        if taken >= cap:
            emails: list[DecodedEmail | str | None] = ["daily_cap"] * len(chunk)
        else:
            emails = list(await asyncio.gather(*(_fetch(ctx, link, c, slots) for c in chunk)))
        for candidate, email in zip(chunk, emails, strict=True):
            if email is None:
                reason: str | None = "gone"
            elif isinstance(email, str):
                reason = email
            else:
                reason = skip_reason(email, config.filters, own)
                if reason is None and taken >= cap:
                    reason = "daily_cap"
            if reason == "daily_cap":
                capped += 1
            if reason is None and isinstance(email, DecodedEmail):
                taken += 1
                accepted += 1
                ctx.emit(_intake(link, email))
            ctx.db.write(
                """INSERT INTO gmail_messages (team_id, link_id, integration_id, message_id, thread_id, outcome, reason)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (link_id, message_id) DO NOTHING""",
                link.id,
                ctx.integration_id,
                candidate.message_id,
                candidate.thread_id,
                "accepted" if reason is None else "skipped",
                reason,
            )
    if accepted:
        ctx.record(
            "info",
            "email_processed",
            f"{accepted} email(s) from {link.external_user_id} taken in",
            user_link_id=link.id,
        )
    if capped:
        ctx.record(
            "warning",
            "daily_cap_reached",
            f"{capped} email(s) from {link.external_user_id} not taken in: the daily intake cap of {cap} is reached",
            user_link_id=link.id,
        )
    return accepted


def mail_url(mailbox: str, message_id: str) -> str:
    return f"https://mail.google.com/mail/u/?authuser={quote(mailbox)}#all/{quote(message_id)}"


def _intake(link: Link, email: DecodedEmail) -> TaskIntake:
    return TaskIntake(
        source="gmail",
        source_id=f"{link.external_user_id}/{email.id}",
        kind="email",
        action="received",
        title=email.subject or "(no subject)",
        body=email.text[:MAX_BODY_CHARS],
        url=mail_url(link.external_user_id, email.id),
        author=email.from_name or email.from_address,
        author_external_id=email.from_address,
        user_id=link.user_id,
        metadata={
            "mailbox": link.external_user_id,
            "link_id": link.id,
            "message_id": email.id,
            "thread_id": email.thread_id,
            "from": email.sender,
            "to": email.to,
            "cc": email.cc,
            "date": email.date,
            "rfc822_message_id": email.message_id_header,
            "labels": email.label_ids,
            "attachments": email.attachments,
            "truncated": len(email.text) > MAX_BODY_CHARS,
        },
    )
