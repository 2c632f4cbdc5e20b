"""Mattermost's config, per installed server (MIMRAI: `{url, token, teamNotificationChannelId?}`),
plus the token of the outgoing webhook or slash command that may call the ingress; and its
settings, per deployment (`IW_MATTERMOST_*`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class MattermostConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: str = Field(pattern=r"^https?://[^\s/]+", description="The server, e.g. https://chat.example.com")
    token: SecretStr = Field(description="A bot (or personal access) token: the bot the agent speaks as.")
    team_notification_channel_id: str | None = Field(
        default=None, alias="teamNotificationChannelId", description="Where team notifications are posted."
    )
    webhook_token: SecretStr | None = Field(
        default=None,
        alias="webhookToken",
        description="The token of an outgoing webhook or slash command pointed at /webhooks/mattermost/{id}.",
    )

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("token")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("the token must not be empty")
        return value

    @property
    def api(self) -> str:
        return f"{self.url}/api/v4"

    @property
    def websocket_url(self) -> str:
        scheme, rest = self.url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/api/v4/websocket"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token.get_secret_value()}"}


class MattermostSettings(BaseSettings):
    """`IW_MATTERMOST_*`: per deployment (each server's URL and tokens are its integration's config)."""

    model_config = SettingsConfigDict(env_prefix="IW_MATTERMOST_", env_file=".env", extra="ignore")

    thread_context_messages: int = Field(
        default=20,
        ge=0,
        le=200,
        description="Earlier posts of a thread sent with a post written in it (message.received's `thread`); 0: none.",
    )
