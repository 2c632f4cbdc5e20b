"""WhatsApp's config (per team: the WhatsApp number people write to, which routes their messages to
the team) and settings (the Twilio account, per deployment: `IW_WHATSAPP_*`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

E164 = r"^\+[1-9][0-9]{6,14}$"


def phone(value: str) -> str:
    """`whatsapp:+1 415 523 8886` -> `+14155238886`."""
    return value.removeprefix("whatsapp:").replace(" ", "").replace("-", "")


class WhatsappConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    number: str = Field(pattern=E164, description="The team's WhatsApp sender number, E.164 (+14155238886).")

    @field_validator("number", mode="before")
    @classmethod
    def _normalise(cls, value: object) -> object:
        return phone(value) if isinstance(value, str) else value


class WhatsappSettings(BaseSettings):
    """`IW_WHATSAPP_*`. Without the auth token every Twilio request is refused, in every environment."""

    model_config = SettingsConfigDict(env_prefix="IW_WHATSAPP_", env_file=".env", extra="ignore")

    account_sid: str | None = Field(default=None, description="The Twilio account (AC...).")
    auth_token: SecretStr | None = Field(default=None, description="Signs Twilio's webhooks; authenticates calls.")
    api_url: str = Field(default="https://api.twilio.com", description="Twilio's REST API.")
    media_hosts: str = Field(default="api.twilio.com", description="Hosts that may receive the account's credentials.")
    working_text: str = Field(
        default="Got it, working on it…", description="The acknowledgement to a linked person; empty: none."
    )

    def allowed_media_hosts(self) -> set[str]:
        hosts = {h.strip().lower() for h in self.media_hosts.split(",") if h.strip()}
        api_host = urlsplit(self.api_url).hostname
        return hosts | ({api_host.lower()} if api_host else set())
