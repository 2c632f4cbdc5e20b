"""What a team's users see and change of an integration over the admin API: its log rows (by
level, time and key, newest first, a page at a time), its linked users (never a token), a user's
own link settings (validated per field), and unlinking (the grant revoked at Google, the link and
its rows gone). Another team's integration or link is a 404, like an unknown one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from tests.conftest import TEAM, Results, eventually
from tests.fakes.google import FakeGoogleState
from tests.google.conftest import ANN, USER, command, install_type, link_user, mail, push_request, watched
from tests.google.test_calendar import TASK, channel_ready, sync_payload, synced
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

OTHER_TEAM = "team-2"
BOB = "bob@acme.example"
BASE = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


async def add_logs(runtime: Runtime, integration_id: str, rows: list[tuple[str, str, int]]) -> None:
    """Log rows as handlers write them: (level, key, minutes after BASE)."""
    await runtime.pool.executemany(
        """INSERT INTO integration_logs (integration_id, team_id, level, key, message, created_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [
            (integration_id, TEAM, level, key, f"{key} at +{minutes}", BASE + timedelta(minutes=minutes))
            for level, key, minutes in rows
        ],
    )


def messages(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [row["message"] for row in answer.json()["logs"]]


async def test_logs_come_newest_first_by_level_time_and_key_a_page_at_a_time(
    runtime: Runtime, google: FakeGoogleState, admin: httpx.AsyncClient
) -> None:
    calendar = await install_type(runtime, "google-calendar")
    other, _ = await install(runtime, InstallRequest("google-calendar", OTHER_TEAM, {}, source="test"))
    await add_logs(
        runtime,
        calendar.id,
        [
            ("info", "action_call", 0),
            ("warning", "stale_sync_skipped", 1),
            ("error", "parked", 2),
            ("info", "action_call", 3),
            ("warning", "daily_cap_reached", 4),
            ("error", "parked", 5),
        ],
    )
    until = (BASE + timedelta(hours=1)).isoformat()  # leaves out the install's own row (written now)
    path = f"/integrations/{calendar.id}/logs"

    pages, cursor = [], None
    while True:
        params = {"team_id": TEAM, "limit": "2", "until": until, **({"cursor": cursor} if cursor else {})}
        answer = await admin.get(path, params=params)
        pages.append(messages(answer))
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == [
        ["parked at +5", "daily_cap_reached at +4"],
        ["action_call at +3", "parked at +2"],
        ["stale_sync_skipped at +1", "action_call at +0"],
    ]
    first = (await admin.get(path, params={"team_id": TEAM, "limit": "1"})).json()["logs"][0]
    assert first["key"] == "installed" and first["level"] == "info"  # the newest: the install itself
    assert set(first) == {
        "id", "key", "level", "message", "event_id", "user_link_id", "details", "duration_ms", "created_at",
    }  # fmt: skip

    by_level = await admin.get(path, params=[("team_id", TEAM), ("level", "error"), ("level", "warning")])
    assert messages(by_level) == ["parked at +5", "daily_cap_reached at +4", "parked at +2", "stale_sync_skipped at +1"]
    comma = await admin.get(path, params={"team_id": TEAM, "level": "error,warning"})
    assert messages(comma) == messages(by_level)
    window = {"since": (BASE + timedelta(minutes=2)).isoformat(), "until": (BASE + timedelta(minutes=4)).isoformat()}
    assert messages(await admin.get(path, params={"team_id": TEAM, **window})) == ["action_call at +3", "parked at +2"]
    keyed = await admin.get(path, params={"team_id": TEAM, "key": "action_call"})
    assert messages(keyed) == ["action_call at +3", "action_call at +0"]

    assert (await admin.get(f"/integrations/{other.id}/logs", params={"team_id": TEAM})).status_code == 404
    assert (await admin.get("/integrations/nope/logs", params={"team_id": TEAM})).status_code == 404
    bad = await admin.get(path, params={"level": "fatal", "limit": "0", "since": "yesterday", "cursor": "x"})
    assert bad.status_code == 400
    assert set(bad.json()["fields"]) == {"team_id", "level.0", "limit", "since"}
    backwards = await admin.get(path, params={"team_id": TEAM, "since": window["until"], "until": window["since"]})
    assert backwards.status_code == 400 and "since must be before until" in str(backwards.json()["fields"])
    forged = await admin.get(path, params={"team_id": TEAM, "cursor": "bm90LWEtY3Vyc29y"})
    assert forged.status_code == 400 and forged.json()["fields"] == {"cursor": ["not a cursor this API gave"]}
    assert (await admin.get(path, params={"team_id": TEAM}, headers={"Authorization": "Bearer x"})).status_code == 401


async def test_linked_users_are_listed_without_tokens_and_team_scoped(
    runtime: Runtime, google: FakeGoogleState, admin: httpx.AsyncClient
) -> None:
    calendar = await install_type(runtime, "google-calendar")
    ann, ann_access, ann_refresh = await link_user(runtime, google, calendar)
    bob, bob_access, bob_refresh = await link_user(
        runtime, google, calendar, address=BOB, user_id="user-bob", config={"syncEvents": False, "scopes": ["x"]}
    )
    other, _ = await install(runtime, InstallRequest("google-calendar", OTHER_TEAM, {}, source="test"))
    path = f"/integrations/{calendar.id}/links"

    answer = await admin.get(path, params={"team_id": TEAM})

    assert answer.status_code == 200
    by_id = {link["id"]: link for link in answer.json()["links"]}
    assert set(by_id) == {ann, bob} and answer.json()["next_offset"] is None
    assert by_id[ann]["config"] == {"syncEvents": True}  # the defaults: Ann never changed hers
    assert by_id[bob]["config"] == {"syncEvents": False}  # only what a user may change; not the scopes
    assert by_id[bob]["user_id"] == "user-bob" and by_id[bob]["external_user_id"] == BOB
    assert by_id[bob]["status"] == "active" and by_id[bob]["type"] == "google-calendar"
    for token in (ann_access, ann_refresh, bob_access, bob_refresh):
        assert token not in answer.text
    assert "token" not in answer.text

    mine = await admin.get(path, params={"team_id": TEAM, "user_id": "user-bob"})
    assert [link["id"] for link in mine.json()["links"]] == [bob]
    first = await admin.get(path, params={"team_id": TEAM, "limit": "1"})
    assert len(first.json()["links"]) == 1 and first.json()["next_offset"] == 1
    assert (await admin.get(f"/integrations/{other.id}/links", params={"team_id": TEAM})).status_code == 404
    assert (await admin.get(path, params={"team_id": OTHER_TEAM})).status_code == 404
    assert (await admin.get(path, params={"team_id": TEAM, "offset": "-1"})).json()["fields"].keys() == {"offset"}


async def test_a_users_settings_are_validated_per_field_and_scoped_to_their_team(
    runtime: Runtime, google: FakeGoogleState, admin: httpx.AsyncClient
) -> None:
    calendar = await install_type(runtime, "google-calendar")
    gmail = await install_type(runtime, "gmail")
    ann, _, _ = await link_user(runtime, google, calendar)
    ann_gmail, _, _ = await link_user(runtime, google, gmail)
    other, _ = await install(runtime, InstallRequest("google-calendar", OTHER_TEAM, {}, source="test"))
    theirs, _, _ = await link_user(runtime, google, other, address=BOB, user_id="user-bob")
    comments, _ = await install(
        runtime, InstallRequest("task-comments", TEAM, {"botUserId": "bot", "botName": "Bot"}, source="test")
    )

    async def patch(integration_id: str, link_id: str, body: dict[str, Any]) -> httpx.Response:
        return await admin.patch(f"/integrations/{integration_id}/links/{link_id}", json=body)

    wrong_type = await patch(calendar.id, ann, {"team_id": TEAM, "config": {"syncEvents": "maybe"}})
    unknown = await patch(calendar.id, ann, {"team_id": TEAM, "config": {"colour": "red"}})
    bad_regex = await patch(gmail.id, ann_gmail, {"team_id": TEAM, "config": {"filters": {"subjectMatching": "("}}})
    no_team = await patch(calendar.id, ann, {"config": {"syncEvents": False}})
    assert wrong_type.status_code == 400 and list(wrong_type.json()["fields"]) == ["syncEvents"]
    assert unknown.json()["fields"] == {"colour": ["Extra inputs are not permitted"]}
    assert bad_regex.status_code == 400 and list(bad_regex.json()["fields"]) == ["filters.subjectMatching"]
    assert no_team.status_code == 400 and list(no_team.json()["fields"]) == ["team_id"]
    for integration_id, link_id, team in (
        (calendar.id, "no-such-link", TEAM),
        (calendar.id, ann_gmail, TEAM),  # a link of another integration
        (other.id, theirs, TEAM),  # another team's
        (calendar.id, ann, OTHER_TEAM),
    ):
        refused = await patch(integration_id, link_id, {"team_id": team, "config": {"syncEvents": False}})
        assert refused.status_code == 404, (integration_id, link_id, team)
    no_settings = await patch(comments.id, "any", {"team_id": TEAM, "config": {"x": 1}})
    assert (
        no_settings.status_code == 400 and "no settings a user can change" in no_settings.json()["fields"]["config"][0]
    )
    stored = await runtime.pool.fetch("SELECT config FROM integration_user_link ORDER BY id")
    assert all("syncEvents" not in row["config"] and "filters" not in row["config"] for row in stored)

    filters = {"sendersBlacklist": ["@ads.example"], "subjectMatching": "invoice"}
    changed = await patch(gmail.id, ann_gmail, {"team_id": TEAM, "config": {"filters": filters}})
    assert changed.status_code == 200
    assert changed.json()["config"]["filters"]["sendersBlacklist"] == ["@ads.example"]
    config = await runtime.pool.fetchval("SELECT config FROM integration_user_link WHERE id = $1", ann_gmail)
    assert config["filters"]["subjectMatching"] == "invoice"


async def test_a_mailboxs_own_filters_apply_after_the_teams(
    runtime: Runtime,
    google: FakeGoogleState,
    worker: Worker,
    admin: httpx.AsyncClient,
    ingress: httpx.AsyncClient,
    results: Results,
) -> None:
    gmail = await install_type(runtime, "gmail", {"filters": {"sendersBlacklist": ["@spam.example"]}})
    link_id, _, _ = await link_user(runtime, google, gmail)
    await watched(runtime, google, gmail, link_id)
    changed = await admin.patch(
        f"/integrations/{gmail.id}/links/{link_id}",
        json={"team_id": TEAM, "config": {"filters": {"sendersBlacklist": ["@newsletter.example"]}}},
    )
    assert changed.status_code == 200
    box = google.mailbox(ANN)
    kept = box.deliver(mail("client@client.example", "Order 42"))
    mine = box.deliver(mail("news@newsletter.example", "This week"))
    teams = box.deliver(mail("x@spam.example", "Cheap"))

    body, headers = push_request(google)
    assert (await ingress.post("/webhooks/gmail", content=body, headers=headers)).status_code == 202

    [intake] = await results.wait_for("task.intake")
    assert intake["data"]["metadata"]["message_id"] == kept
    rows = await eventually(lambda: _outcomes(runtime, 3))
    assert rows == {kept: None, mine: "user_sender_denied", teams: "sender_denied"}


async def _outcomes(runtime: Runtime, count: int) -> dict[str, str | None] | None:
    rows = await runtime.pool.fetch("SELECT message_id, reason FROM gmail_messages")
    return {r["message_id"]: r["reason"] for r in rows} if len(rows) >= count else None


async def test_unlinking_revokes_the_grant_at_google_stops_push_and_removes_the_link(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, admin: httpx.AsyncClient, results: Results
) -> None:
    calendar = await install_type(runtime, "google-calendar")
    ann, _, refresh = await link_user(runtime, google, calendar)
    await channel_ready(runtime, google, ann, calendar)
    sent = await command(runtime, "google-calendar", "sync_task", sync_payload("2026-12-01T09:00:00Z"))
    await eventually(lambda: synced(runtime, sent))
    assert google.calendar(ANN).events[TASK.hex]["status"] == "confirmed"
    await worker.wait_idle()
    path = f"/integrations/{calendar.id}/links/{ann}"

    assert (await admin.delete(path, params={"team_id": OTHER_TEAM})).status_code == 404
    answer = await admin.delete(path, params={"team_id": TEAM})

    assert answer.status_code == 200
    assert answer.json() == {"link_id": ann, "integration_id": calendar.id, "unlinked": True, "revoked": True}
    assert google.revocations == [ANN] and refresh in google.revoked  # the refresh token is dead too
    assert google.calendar(ANN).channels == {}  # the push channel was stopped first
    assert google.calendar(ANN).events[TASK.hex]["status"] == "cancelled"  # no task event left behind
    assert await runtime.pool.fetchval("SELECT count(*) FROM google_calendar_task_events") == 0
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0
    assert await runtime.pool.fetchval("SELECT count(*) FROM google_calendar_channels") == 0
    [event] = await results.wait_for("integration.user_unlinked")
    assert event["data"] == {
        "link_id": ann,
        "integration_id": calendar.id,
        "integration_type": "google-calendar",
        "user_id": USER,
        "external_user_id": ANN,
        "revoked": True,
        "source": "http",
    }
    row = await runtime.pool.fetchrow(
        "SELECT level, message, details FROM integration_logs WHERE key = 'user_unlinked'"
    )
    assert row["details"]["link_id"] == ann and "tokens revoked" in row["message"]
    assert (await admin.delete(path, params={"team_id": TEAM})).status_code == 404  # gone: a second is a 404


async def test_unlinking_is_refused_while_google_cannot_revoke_unless_forced(
    runtime: Runtime, google: FakeGoogleState, admin: httpx.AsyncClient
) -> None:
    gmail = await install_type(runtime, "gmail")
    ann, _, _ = await link_user(runtime, google, gmail)
    google.fail["revoke"] = [503] * 6
    path = f"/integrations/{gmail.id}/links/{ann}"

    refused = await admin.delete(path, params={"team_id": TEAM})
    assert refused.status_code == 502 and "unlinking at the provider failed" in refused.json()["error"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 1
    assert google.mailbox(ANN).stop_calls == 1  # the watch was stopped all the same: harmless

    forced = await admin.delete(path, params={"team_id": TEAM, "force": "true"})
    assert forced.status_code == 200 and forced.json()["revoked"] is False
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0


async def test_a_link_that_needs_reconnecting_is_unlinked_without_calling_google(
    runtime: Runtime, google: FakeGoogleState, admin: httpx.AsyncClient
) -> None:
    gmail = await install_type(runtime, "gmail")
    ann, _, _ = await link_user(runtime, google, gmail)
    await runtime.pool.execute("UPDATE integration_user_link SET status = 'needs_reconnect'")

    answer = await admin.delete(f"/integrations/{gmail.id}/links/{ann}", params={"team_id": TEAM})

    assert answer.status_code == 200 and answer.json()["revoked"] is False
    assert google.revocations == [] and google.mailbox(ANN).stop_calls == 0
    assert orjson.loads(answer.content)["unlinked"] is True
