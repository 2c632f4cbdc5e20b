"""What Telegram sends us, and who handles it: text messages to the bot become `task.intake`.
Every other update kind is accepted, counted and acknowledged."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import TaskIntake
from worker.sdk import Context, Handler, payload_key


class User(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int
    is_bot: bool = False
    username: str | None = None
    first_name: str = ""


class Chat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int
    type: str
    title: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message_id: int
    chat: Chat
    date: int
    text: str | None = None
    caption: str | None = None  # the text of a photo, document or voice message
    author: User | None = Field(default=None, alias="from")


class MessageUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    update_id: int
    message: Message


async def on_message(ctx: Context) -> None:
    message = ctx.payload_as(MessageUpdate).message
    author = message.author
    text = (message.text or message.caption or "").strip()
    if not text or (author is not None and author.is_bot):
        # photos without a caption, service messages, other bots (our own replies)
        ctx.log.info("telegram message skipped", reason="a bot's" if text else "no text")
        return
    ctx.emit(
        TaskIntake(
            source="telegram",
            source_id=f"{message.chat.id}:{message.message_id}",
            kind="message",
            title=text.splitlines()[0][:120],
            body=text,
            author=(author.username or author.first_name) if author else None,
            author_external_id=str(author.id) if author else None,
            metadata={"chat_id": message.chat.id, "chat_type": message.chat.type, "chat_title": message.chat.title},
        )
    )


HANDLERS = [
    Handler("webhook", "message", on_message, key=payload_key("message.chat.id")),  # a chat's messages in order
]
