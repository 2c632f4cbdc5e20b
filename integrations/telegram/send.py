"""Action `send_message`: the bot writes in a chat.

A chat the bot cannot write to (unknown, or the user blocked the bot) is the caller's mistake,
not an outage: the call is refused with Telegram's reason, not parked. The Bot API has no
idempotency key: a send that timed out at the provider and is retried may appear twice.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from integrations.telegram.api import bot
from integrations.telegram.config import TelegramConfig, TelegramSettings
from worker.sdk import ActionRefused, Context, ProviderError


class SendMessageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chat_id: int | str = Field(description="The chat's id, or @channelusername.")
    text: str = Field(min_length=1, max_length=4096, description="Plain text.")
    reply_to_message_id: int | None = Field(default=None, gt=0, description="Answer this message of the chat.")


class SendMessageOutput(BaseModel):
    message_id: int
    chat_id: int


async def send_message(ctx: Context, request: SendMessageInput) -> SendMessageOutput:
    payload: dict[str, object] = {"chat_id": request.chat_id, "text": request.text}
    if request.reply_to_message_id is not None:
        payload["reply_parameters"] = {"message_id": request.reply_to_message_id}
    try:
        result = await bot(
            ctx.http, ctx.settings_as(TelegramSettings), ctx.config_as(TelegramConfig), "sendMessage", payload
        )
    except ProviderError as exc:
        if exc.status in (400, 403):  # chat not found, bot blocked, not a member...
            raise ActionRefused(str(exc), {"chat_id": [str(exc)]} if exc.status == 400 else None) from None
        raise
    return SendMessageOutput(message_id=result["message_id"], chat_id=result["chat"]["id"])
