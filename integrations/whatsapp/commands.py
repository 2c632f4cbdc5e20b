"""`whatsapp.command.send_message`: a WhatsApp message from the team's number (or the shared one)
through Twilio's Messages API, retried on 429/20429 and 5xx (Retry-After honoured), parked on
permanent errors (21211 invalid number; 63016 outside the 24-hour window, where only a template
can go).

`whatsapp.command.send_from_shared_number` (a handler, not an agent tool): the association reply
to someone who wrote to the shared number and is linked in no team yet, when there is no
integration to send as."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from integrations.whatsapp import api
from integrations.whatsapp.config import E164, WhatsappConfig, WhatsappSettings, phone
from worker.sdk import Context, PermanentError


class SendMessageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(pattern=E164, description="The person's number, E.164.")
    body: str | None = Field(default=None, min_length=1, max_length=1600, description="Free text (24-hour window).")
    media_url: list[str] = Field(default_factory=list, max_length=10, description="Public URLs of media to send.")
    content_sid: str | None = Field(default=None, description="An approved template (outside the 24-hour window).")
    content_variables: dict[str, str] | None = Field(default=None, description="The template's variables.")

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("to"), str):
            return {**value, "to": phone(value["to"])}
        return value

    @model_validator(mode="after")
    def _something(self) -> SendMessageInput:
        if not (self.body or self.content_sid or self.media_url):
            raise ValueError("give body, media_url or content_sid")
        return self


class SendMessageOutput(BaseModel):
    sid: str
    status: str | None = None


async def send_message(ctx: Context, request: SendMessageInput) -> SendMessageOutput:
    return await _send(ctx, request, ctx.settings_as(WhatsappSettings).sender(ctx.config_as(WhatsappConfig)))


async def send_from_shared_number(ctx: Context) -> None:
    number = ctx.settings_as(WhatsappSettings).shared_number
    if number is None:
        raise PermanentError("IW_WHATSAPP_SHARED_NUMBER is not set")
    await _send(ctx, ctx.payload_as(SendMessageInput), number)  # invalid input: parked, as for any action


async def _send(ctx: Context, request: SendMessageInput, number: str) -> SendMessageOutput:
    form = [("To", f"whatsapp:{request.to}"), ("From", f"whatsapp:{number}")]
    if request.body:
        form.append(("Body", request.body))
    form += [("MediaUrl", url) for url in request.media_url]
    if request.content_sid:
        form.append(("ContentSid", request.content_sid))
        if request.content_variables:
            form.append(("ContentVariables", orjson.dumps(request.content_variables).decode()))
    message = await api.create_message(ctx.http, ctx.settings_as(WhatsappSettings), form)
    return SendMessageOutput(sid=str(message["sid"]), status=message.get("status"))
