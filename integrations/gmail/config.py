"""Gmail's config (per installed integration: intake filters and the daily cap) and settings
(`IW_GMAIL_*`: the OAuth client, Pub/Sub push authentication, the watch topic, endpoints)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import SettingsConfigDict

from integrations.google_common.settings import GoogleSettings
from worker.sdk import Link

SCOPES = (
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/gmail.compose",
)


class GmailFilters(BaseModel):
    """Which mail becomes intake. Senders are compared by address (`Name <a@b.c>` is `a@b.c`),
    case-insensitively; an entry `@b.c` stands for every address at that domain. Patterns are
    regular expressions searched case-insensitively; both must match when both are set."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    senders_allow: list[str] = Field(
        default_factory=list,
        alias="sendersWhitelist",
        description="Only mail from these senders (empty: from anyone).",
    )
    senders_deny: list[str] = Field(
        default_factory=list, alias="sendersBlacklist", description="Never mail from these senders."
    )
    subject_pattern: str | None = Field(
        default=None, alias="subjectMatching", description="The subject must match this regular expression."
    )
    body_pattern: str | None = Field(
        default=None, alias="bodyMatching", description="The body must match this regular expression."
    )

    @field_validator("senders_allow", "senders_deny")
    @classmethod
    def _senders(cls, values: list[str]) -> list[str]:
        cleaned = []
        for raw in values:
            value = raw.strip().lower()
            _, at, domain = value.rpartition("@")
            if not at or not domain or "." not in domain or " " in value:
                raise ValueError(f"{value!r} is neither an address (a@b.c) nor a domain (@b.c)")
            cleaned.append(value)
        return cleaned

    @field_validator("subject_pattern", "body_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class GmailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    filters: GmailFilters = Field(default_factory=GmailFilters)
    daily_intake_cap: int = Field(
        default=1000,
        ge=0,
        alias="dailyIntakeCap",
        description="Most emails taken in per linked mailbox and day (UTC); the rest is recorded, not taken in.",
    )


class GmailLinkConfig(BaseModel):
    """What a linked user changes of their own link (`integration_user_link.config`): filters of
    their own, applied after the team's (mail must pass both)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    filters: GmailFilters = Field(default_factory=GmailFilters, description="This mailbox's own intake filters.")


def link_filters(link: Link) -> GmailFilters | None:
    """The user's own filters, if they set any (a value written by hand that is not valid: none)."""
    filters = link.settings_as(GmailLinkConfig).filters
    return filters if filters != GmailFilters() else None


class GmailSettings(GoogleSettings):
    """`IW_GMAIL_*`. Without `PUSH_SERVICE_ACCOUNT` every push is refused (fail closed)."""

    model_config = SettingsConfigDict(env_prefix="IW_GMAIL_", env_file=".env", extra="ignore")

    api_url: str = Field(default="https://gmail.googleapis.com", description="The Gmail API.")
    pubsub_topic: str | None = Field(
        default=None, description="projects/<project>/topics/<topic> that Gmail publishes mailbox changes to."
    )
    push_service_account: str | None = Field(
        default=None, description="The service account the push subscription signs its OIDC tokens as."
    )
    push_audience: str | None = Field(
        default=None, description="The tokens' audience; default: IW_PUBLIC_URL + /webhooks/gmail."
    )
    jwks_url: str = Field(default="https://www.googleapis.com/oauth2/v3/certs", description="Google's signing keys.")
    max_messages_per_sync: int = Field(default=100, ge=1, description="Messages fetched per sync run; then it goes on.")
    recent_sync_limit: int = Field(default=50, ge=1, description="Messages looked at when the cursor has expired.")
    recent_sync_days: int = Field(default=7, ge=1, description="... and how far back.")
    watch_renew_after_seconds: float = Field(default=82800, gt=0, description="Renew a watch this long after the last.")
    schedule_every_seconds: float = Field(default=3600, gt=0, description="How often due watches are looked for.")
    poll_after_seconds: float = Field(
        default=3600, gt=0, description="A mailbox not synced this long is synced anyway (lost notifications)."
    )
