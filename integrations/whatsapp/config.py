"""WhatsApp's config (per team: the WhatsApp number people write to, which routes their messages to
the team; or none, to share the deployment's number with other teams) and settings (the Twilio
account and the shared number, per deployment: `IW_WHATSAPP_*`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.sdk import PermanentError

E164 = r"^\+[1-9][0-9]{6,14}$"


def phone(value: str) -> str:
    """`whatsapp:+1 415 523 8886` -> `+14155238886`."""
    return value.removeprefix("whatsapp:").replace(" ", "").replace("-", "")


class WhatsappConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    number: str | None = Field(
        default=None,
        pattern=E164,
        description="The team's own WhatsApp sender number, E.164 (+14155238886): messages to it reach this team. "
        "Left out: the deployment's shared number (IW_WHATSAPP_SHARED_NUMBER), where a message reaches the team "
        "its sender linked in.",
    )

    @field_validator("number", mode="before")
    @classmethod
    def _normalise(cls, value: object) -> object:
        return phone(value) if isinstance(value, str) else value

    @property
    def shared(self) -> bool:
        """On the deployment's shared number (no number of its own)."""
        return self.number is None


class WhatsappSettings(BaseSettings):
    """`IW_WHATSAPP_*`. Without the auth token every Twilio request is refused, in every environment."""

    model_config = SettingsConfigDict(env_prefix="IW_WHATSAPP_", env_file=".env", extra="ignore")

    account_sid: str | None = Field(default=None, description="The Twilio account (AC...).")
    shared_number: str | None = Field(
        default=None,
        pattern=E164,
        description="A WhatsApp number many teams share (E.164): a message to it reaches the team its sender "
        "linked in; teams install WhatsApp without a number to use it. Unset: one number per team.",
    )
    auth_token: SecretStr | None = Field(default=None, description="Signs Twilio's webhooks; authenticates calls.")
    api_url: str = Field(default="https://api.twilio.com", description="Twilio's REST API.")
    media_hosts: str = Field(default="api.twilio.com", description="Hosts that may receive the account's credentials.")
    media_redirect_hosts: str = Field(
        default="media.twiliocdn.com,*.twiliocdn.com,s3-external-1.amazonaws.com",
        description="Hosts Twilio's media URLs may redirect to (its storage; never sent the credentials).",
    )
    working_text: str = Field(
        default="Got it, working on it…", description="The acknowledgement to a linked person; empty: none."
    )

    @field_validator("shared_number", mode="before")
    @classmethod
    def _normalise(cls, value: object) -> object:
        return (phone(value) or None) if isinstance(value, str) else value

    def sender(self, config: WhatsappConfig) -> str:
        """The number an integration sends from: its own, else the shared one."""
        number = config.number or self.shared_number
        if number is None:
            raise PermanentError("no WhatsApp number to send from: none of its own, and no shared number is set")
        return number

    def allowed_media_hosts(self) -> set[str]:
        hosts = {h.strip().lower() for h in self.media_hosts.split(",") if h.strip()}
        api_host = urlsplit(self.api_url).hostname
        return hosts | ({api_host.lower()} if api_host else set())
