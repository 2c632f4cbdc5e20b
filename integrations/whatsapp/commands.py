"""`whatsapp.command.send_message`: a WhatsApp message from the team's number through Twilio's
Messages API, retried on 429/20429 and 5xx (Retry-After honoured), parked on permanent errors
(21211 invalid number; 63016 outside the 24-hour window, where only a template can go)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from integrations.whatsapp import api
from integrations.whatsapp.config import E164, WhatsappConfig, WhatsappSettings, phone
from worker.sdk import Context


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
    config = ctx.config_as(WhatsappConfig)
    form = [("To", f"whatsapp:{request.to}"), ("From", f"whatsapp:{config.number}")]
    if request.body:
        form.append(("Body", request.body))
    form += [("MediaUrl", url) for url in request.media_url]
    if request.content_sid:
        form.append(("ContentSid", request.content_sid))
        if request.content_variables:
            form.append(("ContentVariables", orjson.dumps(request.content_variables).decode()))
    message = await api.create_message(ctx.http, ctx.settings_as(WhatsappSettings), form)
    return SendMessageOutput(sid=str(message["sid"]), status=message.get("status"))
