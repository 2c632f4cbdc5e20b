"""GitHub's config (per installed integration) and settings (the App's credentials, per deployment)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class GithubConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    installation_id: int = Field(
        alias="installationId",
        gt=0,
        description="The GitHub App installation id (a BIGINT; strings are accepted).",
    )


class GithubSettings(BaseSettings):
    """`IW_GITHUB_*`. Without the webhook secret the ingress refuses every GitHub webhook."""

    model_config = SettingsConfigDict(env_prefix="IW_GITHUB_", env_file=".env", extra="ignore")

    app_id: str | None = Field(default=None, description="The App's id (or client id): the JWT issuer.")
    private_key: SecretStr | None = Field(default=None, description="The App's private key, PEM.")
    private_key_file: Path | None = Field(default=None, description="Or a file holding it.")
    webhook_secret: SecretStr | None = Field(default=None, description="Verifies X-Hub-Signature-256.")
    api_url: str = Field(
        default="https://api.github.com", description="GitHub's REST API (GitHub Enterprise: its API URL)."
    )
    app_slug: str | None = Field(default=None, description="The app's slug (github.com/apps/<slug>); not used yet.")

    def pem(self) -> str | None:
        if self.private_key is not None:
            return self.private_key.get_secret_value().replace("\\n", "\n")
        if self.private_key_file is not None:
            return self.private_key_file.read_text()
        return None
