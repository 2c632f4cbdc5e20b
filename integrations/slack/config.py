"""Slack's config (per installed workspace, written by the OAuth callback) and settings (the Slack
app's credentials, per deployment: `IW_SLACK_*`)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The *:history scopes read threads (their context for the agent, the read_thread tool); the
# channels:read and groups:read scopes let read_thread check who is in a channel.
DEFAULT_SCOPES = (
    "app_mentions:read,chat:write,im:history,im:read,files:read,reactions:write,users:read,"
    "channels:history,groups:history,mpim:history,channels:read,groups:read,mpim:read"
)


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
    file_redirect_hosts: str = Field(
        default="*.slack-edge.com",
        description="Hosts Slack's file URLs may redirect to (never sent the bot token).",
    )

    thread_context_messages: int = Field(
        default=20,
        ge=0,
        le=200,
        description="Earlier messages of a thread sent with a message written in it (message.received's "
        "`thread`); 0: none.",
    )

    def allowed_file_hosts(self) -> set[str]:
        hosts = {h.strip().lower() for h in self.file_hosts.split(",") if h.strip()}
        api_host = urlsplit(self.api_url).hostname
        return hosts | ({api_host.lower()} if api_host else set())
