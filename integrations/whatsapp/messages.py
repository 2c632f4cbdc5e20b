"""An inbound WhatsApp message, handed to the shared conversation path (worker/sdk/conversation.py).

The sender is the phone number (`From` without `whatsapp:`), looked up among this integration's
links of type whatsapp (MIMRAI's lookup had no type filter). Media come as attachments fetched
with the account's Basic auth; audio is marked for transcription. The conversation is the phone
number's; a linked person gets a short "working on it" reply.

The shared number (IW_WHATSAPP_SHARED_NUMBER, MIMRAI's one platform-wide number): many teams
install WhatsApp without a number of their own, and a message to the shared number
(`shared_message`) finds its team through its sender's link:

- among the sender's active links to active WhatsApp integrations on the shared number (links to
  a team's own number do not count), the most recently made wins (the person's latest choice);
  the message goes on as `message` to that integration (id `<id>/routed`), through the same path;
- linked in none: one reply from the shared number with an association link whose token names
  no team (`ask_to_link_any_team`); the platform links the person in the team of the user who
  confirms, as MIMRAI did, but with a signed, expiring token rather than MIMRAI's plain
  `externalUserId` parameter that let anyone link any number to their own account.
"""

from __future__ import annotations

from integrations.whatsapp.config import WhatsappConfig, WhatsappSettings, phone
from worker.sdk import AttachmentSource, Context, IntegrationRecord, PermanentError
from worker.sdk.conversation import Command, IncomingMessage, Replies, Sender, ask_to_link_any_team, receive

MAX_MEDIA = 10
SHARED_REPLY = "send_from_shared_number"


def _incoming(ctx: Context, replies: Replies, *, acknowledge: bool) -> IncomingMessage:
    fields = {k: str(v) for k, v in ctx.envelope.payload.items()}
    sender = phone(fields.get("From", ""))
    count = int(fields.get("NumMedia") or 0) if (fields.get("NumMedia") or "0").isdigit() else 0
    media = [
        AttachmentSource(url, None, fields.get(f"MediaContentType{i}") or None)
        for i in range(min(count, MAX_MEDIA))
        if (url := fields.get(f"MediaUrl{i}"))
    ]
    working = ctx.settings_as(WhatsappSettings).working_text  # empty: no acknowledgement
    return IncomingMessage(
        message_id=fields.get("MessageSid") or fields.get("SmsMessageSid") or ctx.envelope.id,
        conversation_id=f"whatsapp-{sender}",
        text=fields.get("Body", "").strip(),
        sender=Sender(sender, fields.get("ProfileName") or None),
        replies=replies,
        acknowledge=Command("send_message", {"to": sender, "body": working}) if working and acknowledge else None,
        attachments=media,
        is_direct=True,
        metadata={
            "wa_id": fields.get("WaId"),
            "message_sid": fields.get("MessageSid"),
            "to": phone(fields.get("To", "")),
        },
    )


def _sender(ctx: Context) -> str:
    return phone(str(ctx.envelope.payload.get("From", "")))


async def on_message(ctx: Context) -> None:
    """A message to a team's own number, or one routed from the shared number."""
    await receive(ctx, _incoming(ctx, Replies("send_message", {"to": _sender(ctx)}, "body"), acknowledge=True))


async def on_shared_message(ctx: Context) -> None:
    """A message to the shared number: on to the team of the sender's newest link, else a link to follow."""
    sender = _sender(ctx)
    target = await team_of(ctx, sender)
    if target is not None:
        ctx.publish(
            "webhook",
            "message",
            dict(ctx.envelope.payload),
            id=f"{ctx.envelope.id}/routed",
            integration_id=target.id,
            team_id=target.team_id,
            headers=dict(ctx.envelope.headers),
        )
        return
    shared = ctx.settings_as(WhatsappSettings).shared_number
    if shared is None:
        raise PermanentError("a shared-number message, but IW_WHATSAPP_SHARED_NUMBER is not set")
    message = _incoming(ctx, Replies(SHARED_REPLY, {"to": sender}, "body"), acknowledge=False)
    ask_to_link_any_team(ctx, message, integration_name="WhatsApp", account=shared)


async def team_of(ctx: Context, sender: str) -> IntegrationRecord | None:
    """The integration on the shared number of the sender's most recently made link, if any."""
    candidates = []
    for link in await ctx.links.across_teams(external_user_id=sender):
        record = await ctx.integrations.get(link.integration_id) if link.integration_id else None
        if record is not None and record.is_active and record.config_as(WhatsappConfig).shared:
            candidates.append((link.created_at.timestamp() if link.created_at else 0.0, link.id, record))
    if not candidates:
        return None
    if len(candidates) > 1:
        ctx.log.info("sender linked in several teams on the shared number: the newest link wins", teams=len(candidates))
    return max(candidates, key=lambda c: (c[0], c[1]))[2]
