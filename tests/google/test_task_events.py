"""A user's task events follow their `syncEvents`: off removes them from their calendar, on brings
back those of the tasks they follow (from the task states the calendar keeps). A task the
platform deleted loses its events in every calendar, once, and no late sync brings them back."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import TEAM, eventually
from tests.fakes.google import FakeGoogleState
from tests.google.conftest import ANN, USER, command, install_type, link_user, parked
from tests.google.test_calendar import TASK, sync_payload, synced
from tests.google.test_oauth import consent, start
from tests.helpers import publish
from worker.platform.install import InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

BOB = "bob@acme.example"
SECOND = uuid.UUID("1c7e4b6f-9d2e-4a8b-8f3c-6e5d4c3b2a10")
UNDATED = uuid.UUID("2d8f5c70-ae3f-4b9c-9a4d-7f6e5d4c3b21")
NOT_ANNS = uuid.UUID("3e906d81-bf40-4cad-ab5e-80f7e6d5c432")


async def sync(runtime: Runtime, payload: dict[str, Any]) -> None:
    sent = await command(runtime, "google-calendar", "sync_task", payload)
    await eventually(lambda: synced(runtime, sent))


def statuses(google: FakeGoogleState, address: str) -> dict[str, str]:
    return {event_id: event["status"] for event_id, event in google.calendar(address).events.items()}


async def mapped(runtime: Runtime, link_id: str) -> set[str]:
    rows = await runtime.pool.fetch("SELECT task_id FROM google_calendar_task_events WHERE link_id = $1", link_id)
    return {r["task_id"] for r in rows}


async def test_sync_events_off_removes_the_users_task_events_and_on_brings_them_back(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, admin: httpx.AsyncClient
) -> None:
    calendar = await install_type(runtime, "google-calendar")
    ann, _, _ = await link_user(runtime, google, calendar)
    bob, _, _ = await link_user(runtime, google, calendar, address=BOB, user_id="user-bob")
    await sync(runtime, sync_payload("2026-12-01T09:00:00Z", subscribers=[USER, "user-bob"]))
    await sync(runtime, sync_payload("2026-12-02", task_id=str(SECOND), title="Write the notes"))
    await sync(runtime, sync_payload(None, task_id=str(UNDATED), title="Someday"))
    await sync(runtime, sync_payload("2026-12-03T09:00:00Z", task_id=str(NOT_ANNS), subscribers=["user-bob"]))
    assert statuses(google, ANN) == {TASK.hex: "confirmed", SECOND.hex: "confirmed"}
    path = f"/integrations/{calendar.id}/links/{ann}"

    off = await admin.patch(path, json={"team_id": TEAM, "config": {"syncEvents": False}})

    assert off.status_code == 200 and off.json()["config"] == {"syncEvents": False}
    await eventually(lambda: statuses(google, ANN) == {TASK.hex: "cancelled", SECOND.hex: "cancelled"})
    await eventually(lambda: _empty(mapped(runtime, ann)))
    assert statuses(google, BOB) == {TASK.hex: "confirmed", NOT_ANNS.hex: "confirmed"}  # Bob's stay
    assert await mapped(runtime, bob) == {str(TASK), str(NOT_ANNS)}
    stored = await runtime.pool.fetchval("SELECT config FROM integration_user_link WHERE id = $1", ann)
    assert stored["syncEvents"] is False

    await sync(runtime, sync_payload("2026-12-04T09:00:00Z", subscribers=[USER, "user-bob"]))  # a later change
    assert google.calendar(ANN).events[TASK.hex]["status"] == "cancelled"  # off stays off

    on = await admin.patch(path, json={"team_id": TEAM, "config": {"syncEvents": True}})

    assert on.status_code == 200
    await eventually(lambda: statuses(google, ANN) == {TASK.hex: "confirmed", SECOND.hex: "confirmed"})
    assert google.calendar(ANN).events[TASK.hex]["start"]["dateTime"] == "2026-12-04T09:00:00+00:00"  # the newest
    assert await eventually(lambda: _equal(mapped(runtime, ann), {str(TASK), str(SECOND)}))
    keys = [r["key"] for r in await runtime.pool.fetch("SELECT key FROM integration_logs ORDER BY created_at")]
    assert keys.count("link_config_changed") == 2 and {"sync_events_off", "sync_events_on"} <= set(keys)

    same = await admin.patch(path, json={"team_id": TEAM, "config": {"syncEvents": True}})
    assert same.status_code == 200
    await worker.wait_idle()
    assert statuses(google, ANN) == {TASK.hex: "confirmed", SECOND.hex: "confirmed"}  # nothing to do


async def _empty(found: Any) -> bool:
    return not await found


async def _equal(found: Any, expected: set[str]) -> bool:
    return bool(await found == expected)


async def test_a_deleted_task_loses_its_events_everywhere_once_and_for_good(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, admin: httpx.AsyncClient
) -> None:
    calendar = await install_type(runtime, "google-calendar")
    ann, _, _ = await link_user(runtime, google, calendar)
    await link_user(runtime, google, calendar, address=BOB, user_id="user-bob")
    both = sync_payload("2026-12-01T09:00:00Z", subscribers=[USER, "user-bob"], updated_at="2026-11-25T10:00:00Z")
    await sync(runtime, both)
    await sync(runtime, sync_payload("2026-12-02", task_id=str(SECOND)))

    deleted = await publish(
        runtime, "google-calendar", "event", "task_deleted", {"task_id": str(TASK), "title": "x"}, team_id=TEAM
    )
    await eventually(lambda: synced(runtime, deleted.id))

    assert statuses(google, ANN) == {TASK.hex: "cancelled", SECOND.hex: "confirmed"}
    assert statuses(google, BOB) == {TASK.hex: "cancelled"}
    assert (
        await runtime.pool.fetchval("SELECT count(*) FROM google_calendar_task_events WHERE task_id = $1", str(TASK))
        == 0
    )
    deletes = len([r for r in google.calendar(ANN).requests if r[0] == "DELETE"])

    again = await command(runtime, "google-calendar", "task_deleted", {"task_id": str(TASK)})  # the command form
    await eventually(lambda: synced(runtime, again))
    assert len([r for r in google.calendar(ANN).requests if r[0] == "DELETE"]) == deletes  # nothing left to do

    late = {**both, "updated_at": "2026-11-26T10:00:00Z"}  # a sync sent before the deletion, arriving after
    await sync(runtime, late)
    assert statuses(google, ANN)[TASK.hex] == "cancelled" and statuses(google, BOB)[TASK.hex] == "cancelled"
    row = await runtime.pool.fetchrow(
        "SELECT deleted_at, task FROM google_calendar_tasks WHERE task_id = $1", str(TASK)
    )
    assert row["deleted_at"] is not None and row["task"] is None
    keys = {r["key"] for r in await runtime.pool.fetch("SELECT key FROM integration_logs")}
    assert {"task_deleted", "deleted_task_sync_skipped"} <= keys

    off = await admin.patch(
        f"/integrations/{calendar.id}/links/{ann}", json={"team_id": TEAM, "config": {"syncEvents": False}}
    )
    on = await admin.patch(
        f"/integrations/{calendar.id}/links/{ann}", json={"team_id": TEAM, "config": {"syncEvents": True}}
    )
    assert off.status_code == on.status_code == 200
    await eventually(lambda: statuses(google, ANN)[SECOND.hex] == "confirmed")
    await worker.wait_idle()
    assert statuses(google, ANN)[TASK.hex] == "cancelled"  # turning sync on does not bring a deleted task back


async def test_a_task_deleted_in_a_team_without_the_calendar_is_nothing_to_do(
    runtime: Runtime, google: FakeGoogleState, worker: Worker
) -> None:
    await install(runtime, InstallRequest("google-calendar", "team-2", {}, source="test"))

    deleted = await publish(runtime, "google-calendar", "event", "task_deleted", {"task_id": str(TASK)}, team_id=TEAM)

    await eventually(lambda: synced(runtime, deleted.id))
    assert await parked(runtime) == []
    assert await runtime.pool.fetchval("SELECT count(*) FROM google_calendar_tasks") == 0


async def test_connecting_again_keeps_a_users_sync_events_setting(
    runtime: Runtime,
    env: dict[str, str],
    google: FakeGoogleState,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
) -> None:
    calendar = await install_type(runtime, "google-calendar")
    link_id, _, _ = await link_user(runtime, google, calendar, config={"syncEvents": False})
    query = await start(ingress, browser, env, "google-calendar")

    callback = await browser.get(
        "/oauth/google-calendar/callback", params={"code": consent(google, query), "state": query["state"]}
    )

    assert callback.status_code == 303 and "status=connected" in callback.headers["location"]
    row = await runtime.pool.fetchrow("SELECT id, config FROM integration_user_link")
    assert row["id"] == link_id and row["config"]["syncEvents"] is False  # not switched back on
