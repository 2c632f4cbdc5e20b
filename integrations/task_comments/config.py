"""Task comments' config, per team: who the bot is on the platform."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TaskCommentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bot_user_id: str | None = Field(
        default=None, alias="botUserId", description="The bot's platform user id (its own comments are skipped)."
    )
    bot_name: str | None = Field(
        default=None, alias="botName", min_length=1, description="A comment containing @<botName> mentions the bot."
    )

    @model_validator(mode="after")
    def _someone(self) -> TaskCommentsConfig:
        if not self.bot_user_id and not self.bot_name:
            raise ValueError("give botUserId or botName (or both)")
        return self
