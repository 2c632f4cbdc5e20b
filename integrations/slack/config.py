"""Slack's config (per installed workspace, written by the OAuth callback) and settings (the Slack
app's credentials, per deployment: `IW_SLACK_*`)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SCOPES = "app_mentions:read,chat:write,im:history,im:read,files:read,reactions:write,users:read"


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    team_id: str = Field(alias="teamId", min_length=1, description="The Slack workspace id (T...).")
    team_name: str | None = Field(default=None, alias="teamName")
    access_token: SecretStr = Field(alias="accessToken", description="The bot token (xoxb-...).")
    bot_user_id: str | None = Field(default=None, alias="botUserId", description="The bot's user id (U...).")
    app_id: str | None = Field(default=None, alias="appId")
    scopes: list[str] = Field(default_factory=list, description="What the workspace granted.")
    refresh_token: SecretStr | None = Field(
        default=None, alias="refreshToken", description="With token rotation on: refreshes the bot token."
    )
    token_expires_at: datetime | None = Field(default=None, alias="tokenExpiresAt")


class SlackSettings(BaseSettings):
    """`IW_SLACK_*`. Without the signing secret the ingress refuses every Slack request."""

    model_config = SettingsConfigDict(env_prefix="IW_SLACK_", env_file=".env", extra="ignore")

    signing_secret: SecretStr | None = Field(default=None, description="Verifies X-Slack-Signature.")
    client_id: str | None = Field(default=None, description="The Slack app's client id (OAuth install).")
    client_secret: SecretStr | None = Field(default=None, description="The Slack app's client secret.")
    scopes: str = Field(default=DEFAULT_SCOPES, description="Bot scopes asked for at install, comma-separated.")
    api_url: str = Field(default="https://slack.com/api", description="Slack's Web API.")
    authorize_url: str = Field(
        default="https://slack.com/oauth/v2/authorize", description="Slack's OAuth page (the install flow)."
    )
    file_hosts: str = Field(
        default="files.slack.com", description="Hosts that may receive the bot token when fetching files."
    )

    def allowed_file_hosts(self) -> set[str]:
        hosts = {h.strip().lower() for h in self.file_hosts.split(",") if h.strip()}
        api_host = urlsplit(self.api_url).hostname
        return hosts | ({api_host.lower()} if api_host else set())
