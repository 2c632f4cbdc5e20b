"""The same user-facing reads and changes as the admin API, as the built-in `integration` commands
on the broker and as CLI commands: log rows, linked users, a user's settings (whose calendar work
goes out as commands with the change), unlinking. Another team's integration is refused."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import TEAM, Results, eventually
from tests.fakes.google import FakeGoogleState
from tests.google.conftest import ANN, USER, Replies, command, install_type, link_user
from tests.google.test_calendar import TASK, sync_payload, synced
from tests.google.test_link_api import add_logs
from tests.helpers import cli
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker


def printed(stdout: str) -> Any:
    """The CLI's answer (indented JSON), whatever log lines came before it."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


async def ask(runtime: Runtime, replies: Replies, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    sent = await command(runtime, "integration", name, payload, user_id=None, replies=replies)
    return await replies.wait(sent)


async def test_the_integration_commands_read_and_change_links_and_logs(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, replies: Replies, results: Results
) -> None:
    calendar = await install_type(runtime, "google-calendar")
    ann, access, refresh = await link_user(runtime, google, calendar)
    other, _ = await install(runtime, InstallRequest("google-calendar", "team-2", {}, source="test"))
    sent = await command(runtime, "google-calendar", "sync_task", sync_payload("2026-12-01T09:00:00Z"))
    await eventually(lambda: synced(runtime, sent))
    assert google.calendar(ANN).events[TASK.hex]["status"] == "confirmed"
    await add_logs(runtime, calendar.id, [("info", "action_call", 0), ("error", "parked", 1)])

    logs = await ask(runtime, replies, "list_logs", {"integration_id": calendar.id, "level": ["info"], "limit": 1})
    assert logs["ok"] is True and len(logs["output"]["logs"]) == 1 and logs["output"]["next_cursor"]
    older = await ask(
        runtime, replies, "list_logs", {"integration_id": calendar.id, "cursor": logs["output"]["next_cursor"]}
    )
    assert older["ok"] and logs["output"]["logs"][0]["id"] not in {row["id"] for row in older["output"]["logs"]}
    links = await ask(runtime, replies, "list_links", {"integration_id": calendar.id})
    assert [link["id"] for link in links["output"]["links"]] == [ann]
    assert access not in json.dumps(links) and refresh not in json.dumps(links)

    refused = await ask(runtime, replies, "list_links", {"integration_id": other.id})
    assert refused["status"] == "refused" and refused["error"] == "no such integration for this team"
    invalid = await ask(
        runtime, replies, "update_link", {"integration_id": calendar.id, "link_id": ann, "config": {"syncEvents": 3}}
    )
    assert invalid["status"] == "refused" and list(invalid["fields"]) == ["syncEvents"]

    off = await ask(
        runtime,
        replies,
        "update_link",
        {"integration_id": calendar.id, "link_id": ann, "config": {"syncEvents": False}},
    )
    assert off["ok"] and off["output"]["config"] == {"syncEvents": False}
    await eventually(lambda: google.calendar(ANN).events[TASK.hex]["status"] == "cancelled")

    gone = await ask(runtime, replies, "unlink_user", {"integration_id": calendar.id, "link_id": ann})
    assert gone["output"] == {"link_id": ann, "integration_id": calendar.id, "unlinked": True, "revoked": True}
    assert google.revocations == [ANN]
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0
    [event] = await results.wait_for("integration.user_unlinked")
    assert event["data"]["source"] == "command" and event["data"]["user_id"] == USER
    again = await ask(runtime, replies, "unlink_user", {"integration_id": calendar.id, "link_id": ann})
    assert again["status"] == "refused" and again["error"] == "no such link for this integration and team"


async def test_the_cli_reads_and_changes_links_and_logs(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, env: dict[str, str]
) -> None:
    calendar = await install_type(runtime, "google-calendar")
    ann, access, refresh = await link_user(runtime, google, calendar)
    sent = await command(runtime, "google-calendar", "sync_task", sync_payload("2026-12-01T09:00:00Z"))
    await eventually(lambda: synced(runtime, sent))

    logs = cli(env, "logs", calendar.id, "--team", TEAM, "--level", "info", "--key", "installed")
    assert logs.returncode == 0, logs.stderr
    assert [row["key"] for row in printed(logs.stdout)["logs"]] == ["installed"]
    bad = cli(env, "logs", calendar.id, "--team", TEAM, "--level", "loud")
    assert bad.returncode == 2 and list(printed(bad.stdout)["fields"]) == ["level.0"]
    elsewhere = cli(env, "logs", calendar.id, "--team", "team-2")
    assert elsewhere.returncode == 1 and printed(elsewhere.stdout)["error"] == "no such integration for this team"

    listed = cli(env, "links", "list", calendar.id, "--team", TEAM)
    assert listed.returncode == 0, listed.stderr
    assert [link["id"] for link in printed(listed.stdout)["links"]] == [ann]
    assert access not in listed.stdout and refresh not in listed.stdout

    invalid = cli(env, "links", "set", calendar.id, ann, "--team", TEAM, "--config", '{"syncEvents": "no way"}')
    assert invalid.returncode == 1 and list(printed(invalid.stdout)["fields"]) == ["syncEvents"]
    changed = cli(env, "links", "set", calendar.id, ann, "--team", TEAM, "--config", '{"syncEvents": false}')
    assert changed.returncode == 0, changed.stderr
    assert printed(changed.stdout)["config"] == {"syncEvents": False}
    await eventually(lambda: google.calendar(ANN).events[TASK.hex]["status"] == "cancelled")

    unlinked = cli(env, "links", "unlink", calendar.id, ann, "--team", TEAM)
    assert unlinked.returncode == 0, unlinked.stderr
    assert printed(unlinked.stdout)["revoked"] is True and google.revocations == [ANN]
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0


async def test_a_link_command_on_an_integration_whose_config_cannot_be_read_is_refused_at_once(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, replies: Replies
) -> None:
    calendar = await install_type(runtime, "google-calendar")
    ann, _, _ = await link_user(runtime, google, calendar)
    await runtime.pool.execute(
        """UPDATE integrations SET config = '{"retired_field": 1}'::jsonb, updated_at = now() WHERE id = $1""",
        calendar.id,
    )

    answer = await ask(
        runtime,
        replies,
        "update_link",
        {"integration_id": calendar.id, "link_id": ann, "config": {"syncEvents": False}},
    )

    assert answer["status"] == "refused" and "install it again" in answer["error"]  # not retried for minutes
    assert await runtime.pool.fetchval("SELECT config FROM integration_user_link WHERE id = $1", ann) == {}
