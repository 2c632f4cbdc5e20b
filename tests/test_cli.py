"""The operator's commands."""

from __future__ import annotations

import json

from cryptography.fernet import Fernet

from tests.conftest import teardown
from tests.helpers import cli
from tests.support.probe import PROBE_REGISTRY
from worker.core.secrets import SecretBox
from worker.core.settings import Settings
from worker.platform import attach
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime


def test_integrations_lists_the_registry(env: dict[str, str]) -> None:
    listed = cli(env, "integrations", "--json")
    assert listed.returncode == 0, listed.stderr
    by_type = {item["type"]: item for item in json.loads(listed.stdout)}
    github = by_type["github"]
    assert github["name"] == "GitHub" and github["webhook"] == "/webhooks/github"
    assert github["config_schema"]["required"] == ["installationId"]
    assert [a["command"] for a in github["actions"]] == [
        "github.command.comment",
        "github.command.list_repositories",
        "github.command.list_branches",
        "github.command.list_pull_requests",
        "github.command.pull_request_status",
        "github.command.connect_repository",
    ]
    assert "github.webhook.pull_request" in github["handles"]


def test_schema_exports_the_contract(env: dict[str, str]) -> None:
    out = cli(env, "schema")
    assert out.returncode == 0, out.stderr
    schemas = json.loads(out.stdout)
    assert schemas["envelope.v1"]["properties"]["kind"]["enum"] == ["webhook", "command", "event"]
    assert "event.task.status_change" in schemas and "event.task.intake" in schemas
    assert schemas["command.github.command.comment.input"]["required"] == ["repository", "issue_number", "body"]


async def test_secrets_are_encrypted_at_rest_and_rotate_to_a_new_key(settings: Settings, env: dict[str, str]) -> None:

    runtime = attach(Runtime(settings, PROBE_REGISTRY))
    await runtime.start()
    try:
        await install(runtime, InstallRequest("probe", "team-s", {"token": "very-secret-token-123"}))
        stored = await runtime.pool.fetchval("SELECT config->>'token' FROM integrations")
        assert stored.startswith("enc:v1:") and "very-secret" not in stored

        old_key = env["IW_SECRET_KEYS"]
        new_key = Fernet.generate_key().decode()
        rotated = cli(
            {**env, "IW_SECRET_KEYS": f"{new_key},{old_key}", "IW_REGISTRY": "tests.support.probe:PROBE_REGISTRY"},
            "secrets",
            "rotate",
        )
        assert rotated.returncode == 0, rotated.stderr
        assert "integrations: 1 row(s) re-encrypted" in rotated.stdout
        now = await runtime.pool.fetchval("SELECT config->>'token' FROM integrations")
        assert now != stored
        assert SecretBox([new_key]).decrypt(now) == "very-secret-token-123"  # the old key is no longer needed
    finally:
        await teardown(runtime)


def test_generate_key_prints_a_usable_key(env: dict[str, str]) -> None:
    out = cli(env, "secrets", "generate-key")
    assert out.returncode == 0
    SecretBox([out.stdout.strip()]).encrypt("x")


def test_bad_configuration_is_reported_clearly(env: dict[str, str]) -> None:
    out = cli({**env, "IW_RETRY_DELAYS": "5,-1"}, "integrations")
    assert out.returncode == 2
    assert "retry_delays" in out.stderr and "positive" in out.stderr
