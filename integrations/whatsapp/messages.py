"""An inbound WhatsApp message, handed to the shared conversation path (worker/sdk/conversation.py).

The sender is the phone number (`From` without `whatsapp:`), looked up among this integration's
links of type whatsapp (MIMRAI's lookup had no type filter). Media come as attachments fetched
with the account's Basic auth; audio is marked for transcription. The conversation is the phone
number's; a linked person gets a short "working on it" reply.
"""

from __future__ import annotations

from integrations.whatsapp.config import WhatsappSettings, phone
from worker.sdk import AttachmentSource, Context
from worker.sdk.conversation import Command, IncomingMessage, Replies, Sender, receive

MAX_MEDIA = 10


async def on_message(ctx: Context) -> None:
    fields = {k: str(v) for k, v in ctx.envelope.payload.items()}
    sender = phone(fields.get("From", ""))
    count = int(fields.get("NumMedia") or 0) if (fields.get("NumMedia") or "0").isdigit() else 0
    media = [
        AttachmentSource(url, None, fields.get(f"MediaContentType{i}") or None)
        for i in range(min(count, MAX_MEDIA))
        if (url := fields.get(f"MediaUrl{i}"))
    ]
    working = ctx.settings_as(WhatsappSettings).working_text  # empty: no acknowledgement
    await receive(
        ctx,
        IncomingMessage(
            message_id=fields.get("MessageSid") or fields.get("SmsMessageSid") or ctx.envelope.id,
            conversation_id=f"whatsapp-{sender}",
            text=fields.get("Body", "").strip(),
            sender=Sender(sender, fields.get("ProfileName") or None),
            replies=Replies("send_message", {"to": sender}, "body"),
            acknowledge=Command("send_message", {"to": sender, "body": working}) if working else None,
            attachments=media,
            is_direct=True,
            metadata={"wa_id": fields.get("WaId"), "message_sid": fields.get("MessageSid")},
        ),
    )
