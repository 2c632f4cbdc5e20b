"""Runtime configuration, from `IW_*` environment variables (and a `.env` file if present)."""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A development-only key so `integration-worker run` works out of the box. Production
# (`IW_ENV=production`) refuses to start with it.
DEV_SECRET_KEY = "ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE="  # noqa: S105 - public on purpose, refused in production
DEV_SIGNING_KEY = "dev-only-signing-key-do-not-use-in-production"

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,40}$")
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IW_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = Field(
        default="development", description="`production` refuses the development keys and logs JSON."
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="`auto`: JSON, unless on a terminal in development."
    )

    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    broker_prefix: str = Field(default="iw", description="Prefix of every exchange and queue name.")
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    database_schema: str = Field(default="public", description="PostgreSQL schema holding the tables.")
    database_pool_size: int = Field(
        default=10,
        ge=1,
        description="PostgreSQL connections of a process's main pool; the batch look-ups have a pool of half as "
        "many (at least 2). Each opens one at start, the others when the work needs them.",
    )

    http_host: str | None = Field(
        default=None,
        description="Address the HTTP servers listen on. Unset: every address (0.0.0.0), or loopback only "
        "(127.0.0.1) while the development keys are in use; with those keys another address is refused.",
    )
    http_port: int = Field(default=8000, description="Port of the HTTP server (ingress, platform API, or both).")
    worker_metrics_port: int = Field(
        default=9101, description="`/healthz`, `/readyz` and `/metrics` of a worker started alone; 0: off."
    )
    public_url: str = Field(default="http://localhost:8000", description="The ingress as providers reach it.")
    platform_url: str = Field(default="http://localhost:3000", description="The platform's web app.")

    secret_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=lambda: [SecretStr(DEV_SECRET_KEY)],
        description="Fernet keys, comma-separated; the first encrypts, all decrypt (rotation).",
    )
    signing_key: SecretStr = Field(default=SecretStr(DEV_SIGNING_KEY), description="Signs OAuth state and links.")
    admin_token: SecretStr | None = Field(default=None, description="Bearer token for the admin HTTP API.")
    service_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for agent tool calls on behalf of any team (trusted services); unset: off. "
        "Team-scoped tool tokens work either way.",
    )
    tool_token_max_ttl: float = Field(
        default=30 * 86400.0, gt=0, description="Longest life, in seconds, of a team-scoped tool token."
    )
    link_ttl: float = Field(default=86400.0, gt=0, description="Seconds an account-link token stays valid.")
    attachment_url_ttl: float = Field(default=86400.0, gt=0, description="Seconds an attachment link works.")
    attachment_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1, description="Largest attachment served.")
    service_poll_interval: float = Field(
        default=2.0, gt=0, description="Seconds between a worker's looks for services (listeners) to take over."
    )
    tool_timeout: float = Field(
        default=30.0, gt=0, le=300, description="Seconds an HTTP, MCP or CLI tool call waits for its answer."
    )

    concurrency: int = Field(
        default=256,
        ge=1,
        description="Messages a worker process runs at once: taken from what it read ahead, looked up, handled "
        "and committed. Fewer keeps latency low under a backlog; at least IW_BATCH_SIZE keeps batches whole.",
    )
    prefetch: int = Field(
        default=1024,
        ge=1,
        description="Deliveries a worker reads ahead per shard queue it consumes (unacknowledged). The read-ahead "
        "is what fairness between teams sees past: a burst deeper than prefetch x shards delays the others.",
    )
    shards: int = Field(
        default=6,
        ge=1,
        le=1000,
        description="Shard queues per integration type: the events of one key go to one shard, and workers share "
        "the shards. 6 splits evenly between 1, 2, 3 or 6 workers; more cost the broker (latency: bench/README.md). "
        "Change it only with the queues drained.",
    )
    type_shards: dict[str, int] = Field(
        default_factory=dict, description='Per type, JSON, overriding IW_SHARDS: {"smtp": 2, "github": 24}'
    )
    tenant_rate: float = Field(
        default=50.0,
        ge=0,
        description="Webhooks a second one team (integration) may send on the normal lane, after a burst of "
        "IW_TENANT_BURST; beyond, its webhooks take the bulk lane, so others' never wait behind its backlog. 0: off.",
    )
    tenant_burst: float = Field(
        default=500.0, ge=1, description="Webhooks one team may send at once before IW_TENANT_RATE applies."
    )
    fence_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a worker holds a team's messages of the other lane while it waits for the switch's "
        "fence (a lost fence: they then run, logged).",
    )
    rebalance_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between a worker's heartbeats, when it also looks at who shares its types and takes "
        "or hands over shards.",
    )
    worker_ttl: float = Field(
        default=5.0,
        gt=0,
        description="Seconds after its last heartbeat a worker counts as gone: its shards are taken over.",
    )
    batch_size: int = Field(
        default=128, ge=1, description="Most deliveries taken, looked up and committed together as one batch."
    )
    batch_linger: float = Field(
        default=0.004,
        ge=0,
        le=1,
        description="Seconds a batch waits to fill up once its first delivery came (4 ms: the lowest p99 at 1,000/s).",
    )
    straggler_wait: float = Field(
        default=0.05,
        gt=0,
        description="Seconds a batch waits for its slowest handlers before committing the finished ones.",
    )
    handler_timeout: float = Field(default=60.0, gt=0, description="Seconds before a handler counts as failed.")
    shutdown_grace: float = Field(default=30.0, ge=0, description="Seconds to finish in-flight work on SIGTERM.")
    retry_delays: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [2.0, 10.0, 60.0, 300.0, 1800.0],
        description="Seconds before each retry; the number of entries is the number of retries.",
    )
    retry_jitter: float = Field(default=0.2, ge=0, le=1, description="Up to this fraction added to a delay.")
    delivery_limit: int = Field(default=50, ge=2, description="Quorum-queue backstop: deliveries before parking.")
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        description="Largest request body: a webhook's (unless its type has its own) and any platform API request's.",
    )
    body_limits: dict[str, int] = Field(default_factory=dict, description='Per type, JSON: {"github": 26214400}')
    inbox_retention_days: float = Field(default=30.0, gt=0, description="Days processed ids are remembered.")
    outbox_relay_interval: float = Field(
        default=5.0, gt=0, description="Seconds between rounds of the relay that publishes events a crash left behind."
    )
    lease_ttl: float = Field(default=15.0, gt=0, description="Seconds an exclusive lease outlives a crashed holder.")
    registry: str = Field(default="integrations.registry:REGISTRY", description="module:attribute of the registry")

    @field_validator("secret_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [SecretStr(part.strip()) for part in value.split(",") if part.strip()]
        return value

    @field_validator("secret_keys")
    @classmethod
    def _some_key(cls, value: list[SecretStr]) -> list[SecretStr]:
        if not value:
            raise ValueError("no key: set IW_SECRET_KEYS (`integration-worker secrets generate-key` makes one)")
        return value

    @field_validator("signing_key")
    @classmethod
    def _signing_key_set(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("blank: set IW_SIGNING_KEY to a random string of at least 32 characters")
        return value

    @field_validator("admin_token", "service_token", mode="before")
    @classmethod
    def _blank_token_is_off(cls, value: object) -> object:
        """An empty or blank token is no token: the API it guards stays off (fail closed)."""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(raw, str) and not raw.strip() else value

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("retry_delays")
    @classmethod
    def _positive_delays(cls, value: list[float]) -> list[float]:
        if any(delay <= 0 for delay in value):
            raise ValueError("retry delays must be positive")
        return value

    @field_validator("type_shards")
    @classmethod
    def _shard_counts(cls, value: dict[str, int]) -> dict[str, int]:
        if any(not 1 <= count <= 1000 for count in value.values()):
            raise ValueError("shard counts are between 1 and 1000")
        return value

    @field_validator("broker_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX_RE.match(value):
            raise ValueError("broker_prefix: lowercase letters, digits, '_', '.', '-'")
        return value

    @field_validator("database_schema")
    @classmethod
    def _schema(cls, value: str) -> str:
        if not _SCHEMA_RE.match(value):
            raise ValueError("database_schema: a plain lowercase identifier")
        return value

    @cached_property
    def max_attempts(self) -> int:
        """Deliveries before a transiently failing message is parked: the first plus one per delay."""
        return len(self.retry_delays) + 1

    def shards_of(self, type_: str) -> int:
        return self.type_shards.get(type_, self.shards)

    def body_limit(self, type_: str, declared: int | None) -> int:
        if type_ in self.body_limits:
            return self.body_limits[type_]
        return declared if declared is not None else self.max_body_bytes

    @property
    def development_keys(self) -> list[str]:
        """The settings still holding a development key from the source (public, so not secret)."""
        found = []
        if any(key.get_secret_value() == DEV_SECRET_KEY for key in self.secret_keys):
            found.append("IW_SECRET_KEYS")
        if self.signing_key.get_secret_value() == DEV_SIGNING_KEY:
            found.append("IW_SIGNING_KEY")
        return found

    def listen_host(self) -> str:
        """The address the HTTP servers bind: IW_HTTP_HOST, or every address, or loopback only while
        a development key is in use (anyone who can reach the service could sign with it). Raises
        InsecureConfiguration when IW_HTTP_HOST asks for a non-loopback address with such a key."""
        dev = self.development_keys
        if self.http_host is None:
            return "127.0.0.1" if dev else "0.0.0.0"  # noqa: S104 - every address, with keys of the deployment's own
        if dev and not is_loopback(self.http_host):
            raise InsecureConfiguration(
                f"IW_HTTP_HOST={self.http_host} would expose the service with the development "
                f"{' and '.join(dev)} (public in the source): set {' and '.join(dev)} of your own "
                "(`integration-worker secrets generate-key`; a random string of 32+ characters), "
                "or listen on 127.0.0.1"
            )
        return self.http_host

    def check_production(self) -> None:
        """Refuse to run in production with the development keys."""
        if self.env != "production":
            return
        if any(key.get_secret_value() == DEV_SECRET_KEY for key in self.secret_keys):
            raise RuntimeError("IW_SECRET_KEYS must be set in production (the development key is refused)")
        if self.signing_key.get_secret_value() == DEV_SIGNING_KEY:
            raise RuntimeError("IW_SIGNING_KEY must be set in production (the development key is refused)")
        if len(self.signing_key.get_secret_value()) < 32:
            raise RuntimeError("IW_SIGNING_KEY must be at least 32 characters")


class ConfigurationError(RuntimeError):
    """The settings cannot work as they are (trying again cannot help): the process says why and
    exits with status 2."""


class InsecureConfiguration(ConfigurationError):
    """Settings that would expose the service (a development key on a public address)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def blank_secret_fields(model: BaseSettings) -> list[str]:
    """Names of `model`'s secret fields that are set but empty or blank: no secret at all."""
    blank = []
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            blank.append(name)
    return blank


def env_name(model: type[BaseSettings], field: str) -> str:
    """The environment variable of a settings field (`IW_GITHUB_WEBHOOK_SECRET`)."""
    return f"{model.model_config.get('env_prefix', '')}{field}".upper()
