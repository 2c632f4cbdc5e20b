"""GitHub's config (per installed integration) and settings (the App's credentials, per deployment)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TASK_URL_PLACEHOLDERS = ("platform_url", "team_id", "task_ref", "prefix", "sequence")
TASK_URL_DEFAULT = "{platform_url}/tasks/{task_ref}"


class GithubConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    installation_id: int = Field(
        alias="installationId",
        gt=0,
        description="The GitHub App installation id (a BIGINT; strings are accepted).",
    )
    task_comments: bool = Field(
        default=True,
        alias="taskComments",
        description="Comment on a pull request with the task's link when its magic word moves a task.",
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
    app_slug: str | None = Field(
        default=None,
        description="The App's slug (github.com/apps/<slug>): a team's install is sent to its installations/new page.",
    )
    client_id: str | None = Field(
        default=None,
        description="The App's client id (`Iv1...`): users link their GitHub account (user OAuth), and an"
        " install is verified as the installer's.",
    )
    client_secret: SecretStr | None = Field(default=None, description="The App's client secret (user OAuth).")
    web_url: str = Field(
        default="https://github.com",
        description="GitHub's web (installations/new, login/oauth/*); GitHub Enterprise: its URL.",
    )
    task_url: str = Field(
        default=TASK_URL_DEFAULT,
        description="A task's page in the platform, linked from pull request comments; placeholders "
        f"{', '.join('{' + p + '}' for p in TASK_URL_PLACEHOLDERS)}.",
    )

    @field_validator("task_url")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        try:
            value.format(**dict.fromkeys(TASK_URL_PLACEHOLDERS, "x"))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"unknown placeholder or bad template: {exc}") from None
        return value

    def task_link(self, platform_url: str, *, team_id: str | None, task_ref: str, prefix: str, sequence: int) -> str:
        """The task's URL in the platform, from `task_url`."""
        return self.task_url.format(
            platform_url=platform_url.rstrip("/"),
            team_id=quote(team_id or "", safe=""),
            task_ref=quote(task_ref, safe=""),
            prefix=quote(prefix, safe=""),
            sequence=sequence,
        )

    def pem(self) -> str | None:
        if self.private_key is not None:
            return self.private_key.get_secret_value().replace("\\n", "\n")
        if self.private_key_file is not None:
            return self.private_key_file.read_text()
        return None
