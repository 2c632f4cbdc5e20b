"""The install lifecycle: the catalog a dashboard renders, and install, update and uninstall through
the admin API, the broker command and the CLI, all on worker/platform/install.py's one path."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx

from schemas.envelope import Envelope
from tests.conftest import INSTALLATION_ID, TEAM, Results, eventually
from tests.fakes.github import FakeGitHubState
from tests.fakes.telegram import FakeTelegramState
from tests.helpers import publish
from tests.tools.conftest import BOT_TOKEN, OTHER_BOT_TOKEN, OTHER_TEAM, BrokerCaller
from worker.cli import dead
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

UNKNOWN_BOT = "7999999:AAE-a-bot-telegram-does-not-know-000001"


async def test_the_catalog_describes_every_type_with_its_config_schema_and_secrets_write_only(
    admin: httpx.AsyncClient,
) -> None:
    response = await admin.get("/integrations/catalog")

    assert response.status_code == 200
    items = {item["type"]: item for item in response.json()["integrations"]}
    # every registered type, not the built-in `integration` type
    assert {"github", "telegram", "probe", "slack", "gmail", "smtp"} <= set(items) and "integration" not in items
    telegram = items["telegram"]
    assert telegram["name"] == "Telegram" and telegram["description"]
    token = telegram["config_schema"]["properties"]["botToken"]
    assert token["writeOnly"] is True and token["format"] == "password"
    assert telegram["config_schema"]["required"] == ["botToken"]
    assert items["github"]["config_schema"]["properties"]["installationId"]["type"] == "integer"
    [send] = telegram["actions"]
    assert send["name"] == "send_message" and send["command"] == "telegram.command.send_message"
    assert send["tool"] == "telegram_send_message"
    assert set(send["input_schema"]["properties"]) == {"chat_id", "text", "reply_to_message_id"}


async def test_the_admin_api_needs_the_admin_token(runtime: Runtime, service: httpx.AsyncClient) -> None:
    assert (await service.get("/integrations/catalog")).status_code == 401  # the service token is not enough
    response = await service.post("/integrations", json={"type": "telegram", "team_id": TEAM, "config": {}})
    assert response.status_code == 401


async def test_install_with_a_bad_config_is_refused_per_field_and_writes_nothing(
    runtime: Runtime, admin: httpx.AsyncClient, results: Results, telegram: FakeTelegramState
) -> None:
    bad_token = await admin.post(
        "/integrations", json={"type": "telegram", "team_id": TEAM, "config": {"botToken": "hello"}}
    )
    no_token = await admin.post("/integrations", json={"type": "telegram", "team_id": TEAM, "config": {"x": 1}})
    github = await admin.post(
        "/integrations", json={"type": "github", "team_id": TEAM, "config": {"installationId": "abc"}}
    )
    unknown = await admin.post("/integrations", json={"type": "jira", "team_id": TEAM, "config": {}})

    assert bad_token.status_code == 400
    assert bad_token.json() == {
        "error": "invalid config",
        "fields": {
            "botToken": ["Value error, not a Telegram bot token (digits, a colon, then at least 30 characters)"]
        },
    }
    assert no_token.json()["fields"] == {"botToken": ["Field required"], "x": ["Extra inputs are not permitted"]}
    assert github.status_code == 400 and list(github.json()["fields"]) == ["installationId"]
    assert unknown.status_code == 404
    assert await runtime.pool.fetchval("SELECT count(*) FROM integrations") == 0
    assert telegram.calls == []  # no live check for a config that is not even valid


async def test_install_with_a_config_the_live_service_rejects_is_refused_with_its_reason(
    runtime: Runtime, admin: httpx.AsyncClient, telegram: FakeTelegramState, github: FakeGitHubState
) -> None:
    bot = await admin.post(
        "/integrations", json={"type": "telegram", "team_id": TEAM, "config": {"botToken": UNKNOWN_BOT}}
    )
    app = await admin.post("/integrations", json={"type": "github", "team_id": TEAM, "config": {"installationId": 999}})

    assert bot.status_code == 422
    assert bot.json() == {
        "error": "the service refused the config: Telegram refused the bot token "
        "(Telegram getMe -> HTTP 401: Unauthorized)"
    }
    assert UNKNOWN_BOT not in bot.text
    assert app.status_code == 422
    assert app.json()["error"] == "the service refused the config: GitHub has no installation 999 of this App"
    assert await runtime.pool.fetchval("SELECT count(*) FROM integrations") == 0
    assert "setWebhook" not in telegram.calls


async def test_a_good_install_publishes_installed_runs_post_install_and_never_shows_the_secret(
    runtime: Runtime, admin: httpx.AsyncClient, results: Results, telegram: FakeTelegramState
) -> None:
    created = await admin.post(
        "/integrations", json={"type": "telegram", "team_id": TEAM, "config": {"botToken": BOT_TOKEN}, "user_id": "ada"}
    )

    assert created.status_code == 201, created.text
    integration = created.json()
    assert integration["config"] == {"botToken": "[set]"} and integration["is_new_install"] is True
    assert integration["external_team_id"] == "7000001" and integration["status"] == "active"
    [installed] = await results.wait_for("integration.installed")
    assert installed["team_id"] == TEAM and installed["integration_id"] == integration["id"]
    assert installed["data"] | {"integration_id": None} == {
        "integration_id": None,
        "type": "telegram",
        "name": "Telegram",
        "team_id": TEAM,
        "external_team_id": "7000001",
        "user_id": "ada",
        "is_new_install": True,
        "source": "http",
    }
    webhook = telegram.webhooks[BOT_TOKEN]
    assert webhook["url"] == f"https://iw.example.com/webhooks/telegram/{integration['id']}"
    assert len(webhook["secret_token"]) == 64 and webhook["allowed_updates"] == ["message"]

    listed = await admin.get("/integrations", params={"team_id": TEAM})
    one = await admin.get(f"/integrations/{integration['id']}", params={"team_id": TEAM})
    elsewhere = await admin.get(f"/integrations/{integration['id']}", params={"team_id": OTHER_TEAM})
    assert [i["id"] for i in listed.json()["integrations"]] == [integration["id"]]
    assert one.json()["config"] == {"botToken": "[set]"}
    assert elsewhere.status_code == 404
    secret_part = BOT_TOKEN.split(":")[1]
    for text in (created.text, listed.text, one.text, str(results.items)):
        assert secret_part not in text
    stored = await runtime.pool.fetchval("SELECT config::text FROM integrations")
    assert secret_part not in stored and "enc:v1:" in stored


async def test_update_keeps_the_secret_it_cannot_read_and_publishes_updated(
    runtime: Runtime, admin: httpx.AsyncClient, results: Results, telegram: FakeTelegramState
) -> None:
    created = (
        await admin.post("/integrations", json={"type": "telegram", "team_id": TEAM, "config": {"botToken": BOT_TOKEN}})
    ).json()

    kept = await admin.patch(f"/integrations/{created['id']}", json={"team_id": TEAM, "config": {"botToken": "[set]"}})
    other_bot = await admin.patch(
        f"/integrations/{created['id']}", json={"team_id": TEAM, "config": {"botToken": OTHER_BOT_TOKEN}}
    )
    invalid = await admin.patch(f"/integrations/{created['id']}", json={"team_id": TEAM, "config": {"botToken": "x"}})
    wrong_team = await admin.patch(f"/integrations/{created['id']}", json={"team_id": OTHER_TEAM, "config": {}})

    assert kept.status_code == 200 and kept.json()["config"] == {"botToken": "[set]"}
    [updated] = await results.wait_for("integration.updated")
    assert updated["data"] == {"integration_id": created["id"], "type": "telegram", "team_id": TEAM}
    assert telegram.calls.count("setWebhook") == 2  # post_install ran again with the kept token
    assert other_bot.status_code == 409 and "another Telegram account" in other_bot.json()["error"]
    assert invalid.status_code == 400 and "botToken" in invalid.json()["fields"]
    assert wrong_team.status_code == 404


async def test_uninstall_runs_pre_uninstall_and_the_rows_links_and_logs_go(
    runtime: Runtime,
    admin: httpx.AsyncClient,
    service: httpx.AsyncClient,
    results: Results,
    telegram: FakeTelegramState,
) -> None:
    created = (
        await admin.post("/integrations", json={"type": "telegram", "team_id": TEAM, "config": {"botToken": BOT_TOKEN}})
    ).json()
    await runtime.pool.execute(
        """INSERT INTO integration_user_link (user_id, team_id, external_user_id, integration_id, integration_type)
           VALUES ('ada', $1, '5550001', $2, 'telegram')""",
        TEAM,
        created["id"],
    )
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_logs") == 1  # "installed"
    tools = await service.get("/tools", params={"team_id": TEAM})
    assert [t["function"]["name"] for t in tools.json()["tools"]] == ["telegram_send_message"]

    someone_else = await admin.delete(f"/integrations/{created['id']}", params={"team_id": OTHER_TEAM})
    removed = await admin.delete(f"/integrations/{created['id']}", params={"team_id": TEAM})

    assert someone_else.status_code == 404
    assert removed.status_code == 200 and removed.json() == {"id": created["id"], "uninstalled": True}
    assert telegram.calls[-1] == "deleteWebhook" and BOT_TOKEN not in telegram.webhooks
    [uninstalled] = await results.wait_for("integration.uninstalled")
    assert uninstalled["data"] == {"integration_id": created["id"], "type": "telegram", "team_id": TEAM}
    for table in ("integrations", "integration_user_link", "integration_logs"):
        assert await runtime.pool.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    assert (await service.get("/tools", params={"team_id": TEAM})).json() == {"tools": []}
    again = await admin.delete(f"/integrations/{created['id']}", params={"team_id": TEAM})
    assert again.status_code == 404


async def test_uninstall_refuses_when_the_provider_cannot_be_told_unless_forced(
    runtime: Runtime, admin: httpx.AsyncClient, telegram: FakeTelegramState
) -> None:
    created = (
        await admin.post("/integrations", json={"type": "telegram", "team_id": TEAM, "config": {"botToken": BOT_TOKEN}})
    ).json()
    telegram.fail_methods["deleteWebhook"] = 500

    refused = await admin.delete(f"/integrations/{created['id']}", params={"team_id": TEAM})
    forced = await admin.delete(f"/integrations/{created['id']}", params={"team_id": TEAM, "force": "true"})

    assert refused.status_code == 502
    assert refused.json()["error"].startswith("pre-uninstall failed: Telegram deleteWebhook -> HTTP 500")
    assert forced.status_code == 200
    assert await runtime.pool.fetchval("SELECT count(*) FROM integrations") == 0


async def test_install_update_and_uninstall_as_broker_commands(
    runtime: Runtime,
    worker: Worker,
    broker_caller: BrokerCaller,
    results: Results,
    telegram: FakeTelegramState,
) -> None:
    def command(id_: str, name: str, payload: dict[str, Any], team: str = TEAM) -> Envelope:
        return Envelope(id=id_, type="integration", kind="command", name=name, team_id=team, payload=payload)

    bad = await broker_caller.call(command("i-1", "install", {"type": "telegram", "config": {"botToken": "x"}}))
    rejected = await broker_caller.call(
        command("i-2", "install", {"type": "telegram", "config": {"botToken": UNKNOWN_BOT}})
    )
    good = await broker_caller.call(command("i-3", "install", {"type": "telegram", "config": {"botToken": BOT_TOKEN}}))

    assert bad["status"] == "refused" and bad["error"] == "invalid config" and list(bad["fields"]) == ["botToken"]
    assert rejected["status"] == "refused" and "Telegram refused the bot token" in rejected["error"]
    assert good["ok"] is True, good
    output = good["output"]
    assert output["type"] == "telegram" and output["team_id"] == TEAM and output["is_new_install"] is True
    assert output["config"] == {"botToken": "[set]"}
    [installed] = await results.wait_for("integration.installed")
    assert installed["data"]["source"] == "command" and installed["integration_id"] == output["integration_id"]

    updated = await broker_caller.call(
        command("i-4", "update", {"integration_id": output["integration_id"], "config": {"botToken": "[set]"}})
    )
    stolen = await broker_caller.call(
        command("i-5", "uninstall", {"integration_id": output["integration_id"]}, team=OTHER_TEAM)
    )
    removed = await broker_caller.call(command("i-6", "uninstall", {"integration_id": output["integration_id"]}))

    assert updated["ok"] is True and updated["output"]["is_new_install"] is False
    assert stolen["status"] == "refused" and stolen["error"] == "no such integration for this team"
    assert removed == {
        "ok": True,
        "status": "succeeded",
        "output": {"integration_id": output["integration_id"], "uninstalled": True},
    }
    await results.wait_for("integration.uninstalled")
    assert await runtime.pool.fetchval("SELECT count(*) FROM integrations") == 0


async def test_an_install_command_another_team_holds_the_account_of_is_refused_at_once(
    worker: Worker, broker_caller: BrokerCaller, telegram: FakeTelegramState
) -> None:
    def command(id_: str, team: str) -> Envelope:
        payload = {"type": "telegram", "config": {"botToken": BOT_TOKEN}}
        return Envelope(id=id_, type="integration", kind="command", name="install", team_id=team, payload=payload)

    first = await broker_caller.call(command("t-1", TEAM))
    taken = await broker_caller.call(command("t-2", OTHER_TEAM))  # retrying would never change the answer

    assert first["ok"] is True
    assert taken["status"] == "refused" and "already installed by another team" in taken["error"]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_cli_installs_updates_and_uninstalls_on_the_same_path(
    runtime: Runtime, env: dict[str, str], github: FakeGitHubState, results: Results
) -> None:
    bad = cli(env, "install", "github", "--team", TEAM, "--config", '{"installationId": "abc"}')
    good = cli(env, "install", "github", "--team", TEAM, "--config", f'{{"installationId": {INSTALLATION_ID}}}')

    assert bad.returncode == 1 and '"installationId"' in bad.stdout, bad.stderr
    assert good.returncode == 0, good.stderr
    installed = await results.wait_for("integration.installed")
    integration_id = installed[0]["integration_id"]
    assert installed[0]["data"]["source"] == "cli"

    updated = cli(env, "update", integration_id, "--team", TEAM, "--config", f'{{"installationId": {INSTALLATION_ID}}}')
    assert updated.returncode == 0, updated.stderr
    await results.wait_for("integration.updated")

    removed = cli(env, "uninstall", integration_id, "--team", TEAM)
    assert removed.returncode == 0, removed.stderr
    await eventually(lambda: _count(runtime))


async def _count(runtime: Runtime) -> bool:
    return await runtime.pool.fetchval("SELECT count(*) FROM integrations") == 0


async def test_a_parked_install_command_shows_no_secret_but_replays_whole(
    runtime: Runtime, worker: Worker, env: dict[str, str], telegram: FakeTelegramState
) -> None:
    sent = await publish(
        runtime, "integration", "command", "install", {"type": "telegram", "config": {"botToken": UNKNOWN_BOT}},
        team_id=TEAM,
    )  # fmt: skip
    [parked] = await eventually(lambda: dead.list_parked(runtime.broker, None))  # refused, nobody waiting: parked
    assert parked.id == sent.id and "Telegram refused the bot token" in parked.error
    assert UNKNOWN_BOT not in parked.error

    [listed] = await dead.list_parked(runtime.broker, None, runtime.registry)
    assert listed.envelope is not None and listed.envelope["payload"]["config"] == {"botToken": "[hidden]"}
    shown = cli(env, "dead", "show", sent.id)
    assert shown.returncode == 0, shown.stderr
    assert '"botToken": "[hidden]"' in shown.stdout and UNKNOWN_BOT not in shown.stdout
    listed_json = cli(env, "dead", "list", "--json")
    assert sent.id in listed_json.stdout and UNKNOWN_BOT not in listed_json.stdout

    replayed = cli(env, "dead", "replay", sent.id)  # the message itself kept the token: refused again for it
    assert replayed.returncode == 0 and "1 message(s) replayed" in replayed.stdout
    [again] = await eventually(lambda: dead.list_parked(runtime.broker, None))
    assert again.envelope is not None and again.envelope["payload"]["config"] == {"botToken": UNKNOWN_BOT}
    assert "Telegram refused the bot token" in again.error


async def test_an_integration_whose_config_cannot_be_read_can_be_seen_reinstalled_and_removed(
    runtime: Runtime, admin: httpx.AsyncClient, results: Results, telegram: FakeTelegramState
) -> None:
    created = (
        await admin.post("/integrations", json={"type": "telegram", "team_id": TEAM, "config": {"botToken": BOT_TOKEN}})
    ).json()
    # sealed with a key since dropped from IW_SECRET_KEYS
    await runtime.pool.execute(
        """UPDATE integrations SET config = jsonb_set(config, '{botToken}', '"enc:v1:gAAAAABnot-our-key"'),
           updated_at = now() WHERE id = $1""",
        created["id"],
    )

    one = await admin.get(f"/integrations/{created['id']}", params={"team_id": TEAM})
    changed = await admin.patch(f"/integrations/{created['id']}", json={"team_id": TEAM, "config": {}})
    refused = await admin.delete(f"/integrations/{created['id']}", params={"team_id": TEAM})

    assert one.status_code == 200 and one.json()["status"] == "active" and "error" in one.json()
    assert changed.status_code == 409 and "install it again with a whole config" in changed.json()["error"]
    assert refused.status_code == 409 and "uninstall it with force" in refused.json()["error"]

    again = await admin.post(
        "/integrations", json={"type": "telegram", "team_id": TEAM, "config": {"botToken": BOT_TOKEN}}
    )
    assert again.status_code == 200 and again.json()["id"] == created["id"]  # the config replaced
    assert (await admin.get(f"/integrations/{created['id']}", params={"team_id": TEAM})).json()["config"] == {
        "botToken": "[set]"
    }

    await runtime.pool.execute(
        'UPDATE integrations SET config = \'{"botToken": "enc:v1:gAAAAABnot-our-key"}\', updated_at = now()'
    )
    forced = await admin.delete(f"/integrations/{created['id']}", params={"team_id": TEAM, "force": "true"})
    assert forced.status_code == 200
    assert await runtime.pool.fetchval("SELECT count(*) FROM integrations") == 0
    [uninstalled] = await results.wait_for("integration.uninstalled")
    assert uninstalled["integration_id"] == created["id"]
