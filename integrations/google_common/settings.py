"""Settings every Google integration has: its OAuth client and Google's OAuth endpoints.

Each integration reads them with its own prefix (`IW_GMAIL_CLIENT_ID`,
`IW_GOOGLE_CALENDAR_CLIENT_ID`); one Google OAuth client may serve both.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class GoogleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    client_id: str | None = Field(default=None, description="The Google OAuth client id (a web application).")
    client_secret: SecretStr | None = Field(default=None, description="The OAuth client's secret.")
    auth_url: str = Field(
        default="https://accounts.google.com/o/oauth2/v2/auth", description="Google's OAuth consent page."
    )
    token_url: str = Field(default="https://oauth2.googleapis.com/token", description="Google's token endpoint.")
    userinfo_url: str = Field(
        default="https://openidconnect.googleapis.com/v1/userinfo", description="Who connected (their Google account)."
    )
    revoke_url: str = Field(
        default="https://oauth2.googleapis.com/revoke",
        description="Google's token revocation endpoint (called when a user unlinks).",
    )

    @property
    def oauth_configured(self) -> bool:
        return bool(self.client_id) and self.client_secret is not None
