"""Twilio's inbound WhatsApp messages at `POST /webhooks/whatsapp`.

The signature is checked in every environment (MIMRAI skipped it outside production) against
IW_PUBLIC_URL + the path and query Twilio called, over every form parameter received (Twilio adds
parameters without notice). A message is published with its `MessageSid` as delivery id (a retry
collapses) and routed by the receiving number (`To`) to the team that installed it; Twilio gets an
empty TwiML answer at once, and the reply goes out later through the REST API. Status callbacks
and non-WhatsApp messages are answered and dropped.

A message to the deployment's shared number (IW_WHATSAPP_SHARED_NUMBER) names no integration: it
is published as `shared_message`, and the worker finds its team through the sender's link
(messages.py). The ingress reads no database: once the broker has it, nothing is lost, while a
failed look-up here would be an error Twilio does not retry by default.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from integrations.whatsapp import signature
from integrations.whatsapp.config import WhatsappSettings, phone
from worker.sdk import Accept, Context, Reply, WebhookRejected, WebhookRequest

EMPTY_TWIML = Reply(200, b'<?xml version="1.0" encoding="UTF-8"?><Response/>', "text/xml")


async def receive(request: WebhookRequest, ctx: Context) -> Accept | Reply:
    settings = ctx.settings_as(WhatsappSettings)
    if settings.auth_token is None:
        raise WebhookRejected(401, "Twilio requests are refused: IW_WHATSAPP_AUTH_TOKEN is not set")
    is_json = request.headers.get("content-type", "").startswith("application/json")
    params = [] if is_json else parse_qsl(request.body.decode("utf-8", errors="replace"), keep_blank_values=True)
    if not signature.valid(
        settings.auth_token.get_secret_value(),
        request.url,
        params,
        request.headers.get("x-twilio-signature"),
        request.body,
    ):
        raise WebhookRejected(401, "missing or wrong X-Twilio-Signature")
    fields = dict(params)
    if not fields.get("From", "").startswith("whatsapp:") or "MessageStatus" in fields:
        return EMPTY_TWIML  # an SMS, a status callback: not a message for the bot
    sid = fields.get("MessageSid") or fields.get("SmsMessageSid")
    to = phone(fields.get("To", ""))
    if not sid or not to:
        raise WebhookRejected(400, "MessageSid and To are required")
    idempotency = request.headers.get("i-twilio-idempotency-token")
    headers = {"i-twilio-idempotency-token": idempotency} if idempotency else {}
    if settings.shared_number is not None and to == settings.shared_number:
        return Accept(name="shared_message", delivery_id=sid, payload=fields, headers=headers, response=EMPTY_TWIML)
    return Accept(
        name="message",
        delivery_id=sid,
        payload=fields,
        external_team_id=to,
        headers=headers,
        response=EMPTY_TWIML,
    )
