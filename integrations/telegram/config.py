"""Telegram's config (per installed bot) and settings (per deployment)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_TOKEN_RE = re.compile(r"^[0-9]{5,12}:[A-Za-z0-9_-]{30,}$")


class TelegramConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bot_token: SecretStr = Field(
        alias="botToken", description="The bot's token from @BotFather (123456789:AA...). Stored encrypted."
    )

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        if not _TOKEN_RE.match(value.get_secret_value()):
            raise ValueError("not a Telegram bot token (digits, a colon, then at least 30 characters)")
        return value

    @property
    def bot_id(self) -> str:
        """The bot's numeric id: the part of the token before the colon, not secret."""
        return self.bot_token.get_secret_value().split(":", 1)[0]


class TelegramSettings(BaseSettings):
    """`IW_TELEGRAM_*`."""

    model_config = SettingsConfigDict(env_prefix="IW_TELEGRAM_", env_file=".env", extra="ignore")

    api_url: str = Field(default="https://api.telegram.org", description="The Bot API (a local Bot API server works).")
