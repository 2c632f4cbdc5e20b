"""SMTP's config (per installed integration; the password is encrypted at rest) and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from integrations.email_common.compose import EmailAddress

TlsMode = Literal["implicit", "starttls", "none"]


class SmtpConfig(BaseModel):
    """`tls`: `implicit` (TLS from the first byte, port 465), `starttls` (plaintext, then a
    forced upgrade; the default on other ports) or `none` (a local relay, and only without
    credentials: a password never travels in the clear). MIMRAI's `secure: true` means implicit."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=587, ge=1, le=65535)
    user: str | None = Field(default=None, max_length=320)
    password: SecretStr | None = None
    tls: TlsMode | None = Field(default=None, description="Default: implicit on port 465, else starttls.")
    secure: bool | None = Field(default=None, description="MIMRAI's flag: true means implicit TLS.")
    from_name: str | None = Field(default=None, alias="fromName", max_length=200)
    from_email: EmailAddress | None = Field(default=None, alias="fromEmail")

    @model_validator(mode="after")
    def _consistent(self) -> SmtpConfig:
        if self.password is not None and not self.user:
            raise ValueError("a password needs a user")
        if self.user and self.password is None:
            raise ValueError("a user needs a password")
        if self.tls_mode == "none" and self.user:
            raise ValueError("tls 'none' sends the password in the clear: use starttls or implicit")
        if not self.from_email and not (self.user and "@" in self.user):
            raise ValueError("fromEmail is required when the user is not an email address")
        return self

    @property
    def tls_mode(self) -> TlsMode:
        if self.tls is not None:
            return self.tls
        if self.secure is True or self.port == 465:
            return "implicit"
        return "starttls"

    @property
    def sender(self) -> str:
        return self.from_email or self.user or ""


class SmtpSettings(BaseSettings):
    """`IW_SMTP_*`."""

    model_config = SettingsConfigDict(env_prefix="IW_SMTP_", env_file=".env", extra="ignore")

    timeout: float = Field(default=30.0, gt=0, description="Seconds for connecting and for each reply.")
    ca_file: Path | None = Field(default=None, description="Extra CA certificates (PEM) trusted for SMTP servers.")
