"""Google Calendar: one event per task however often it is synced, PATCH with only what changed,
deletes that count as done when the event is gone, and push channels whose notifications
(token checked at the ingress) become `calendar.event_changed` through an incremental sync."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import TEAM, Results, eventually, queue_depth
from tests.fakes.google import Calendar, FakeGoogleState
from tests.google.conftest import ANN, USER, Replies, command, install_type, link_user
from worker.cli import dead
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker
from worker.sdk import IntegrationRecord

TASK = uuid.UUID("0b6f3a5e-8c1d-4f7a-9e2b-5d4c3b2a1f00")


def sync_payload(due: str | None, **overrides: Any) -> dict[str, Any]:
    payload = {
        "task_id": str(TASK),
        "title": "Ship the release",
        "task_ref": "ABC-12",
        "description": "Everything green",
        "url": "https://app.example.com/tasks/ABC-12",
        "team_name": "Acme",
        "due_date": due,
        "timezone": "Europe/Paris",
        "subscribers": [USER],
    }
    payload.update(overrides)
    return payload


async def calendar_ready(runtime: Runtime, google: FakeGoogleState, **config: Any) -> tuple[IntegrationRecord, str]:
    integration = await install_type(runtime, "google-calendar", config)
    link_id, _, _ = await link_user(runtime, google, integration)
    return integration, link_id


async def synced(runtime: Runtime, command_id: str) -> bool:
    return bool(await runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", command_id))


async def test_syncing_a_task_twice_leaves_one_event_and_losing_the_due_date_removes_it(
    runtime: Runtime, google: FakeGoogleState, worker: Worker
) -> None:
    _, link_id = await calendar_ready(runtime, google)
    cal = google.calendar(ANN)

    for _ in range(2):
        sent = await command(runtime, "google-calendar", "sync_task", sync_payload("2026-12-01T15:00:00+01:00"))
        await eventually(lambda s=sent: synced(runtime, s))

    assert list(cal.events) == [TASK.hex]
    event = cal.events[TASK.hex]
    assert event["summary"] == "ABC-12 Ship the release" and event["status"] == "confirmed"
    assert event["start"] == {"dateTime": "2026-12-01T15:00:00+01:00", "timeZone": "Europe/Paris"}
    assert event["end"] == {"dateTime": "2026-12-01T15:30:00+01:00", "timeZone": "Europe/Paris"}  # not zero-length
    assert event["source"] == {"title": "Task in Acme", "url": "https://app.example.com/tasks/ABC-12"}
    assert [method for method, _, _ in cal.requests] == ["POST", "POST", "PATCH"]  # the repeat: 409, then PATCH
    rows = await runtime.pool.fetch("SELECT task_id, link_id, event_id, etag FROM google_calendar_task_events")
    assert [(r["task_id"], r["link_id"], r["event_id"]) for r in rows] == [(str(TASK), link_id, TASK.hex)]
    assert rows[0]["etag"] == event["etag"]

    sent = await command(runtime, "google-calendar", "sync_task", sync_payload(None, due_date=None))
    await eventually(lambda: synced(runtime, sent))
    assert cal.events[TASK.hex]["status"] == "cancelled"
    assert await runtime.pool.fetchval("SELECT count(*) FROM google_calendar_task_events") == 0

    sent = await command(runtime, "google-calendar", "sync_task", sync_payload("2026-12-02"))  # due again, a day
    await eventually(lambda: synced(runtime, sent))
    assert cal.events[TASK.hex]["status"] == "confirmed"  # revived, still one event
    assert cal.events[TASK.hex]["start"] == {"date": "2026-12-02"} and cal.events[TASK.hex]["end"] == {
        "date": "2026-12-03"
    }
    assert len(cal.events) == 1


async def test_a_removed_subscriber_or_one_who_turned_sync_off_loses_the_event(
    runtime: Runtime, google: FakeGoogleState, worker: Worker
) -> None:
    integration, ann = await calendar_ready(runtime, google)
    bob, _, _ = await link_user(runtime, google, integration, address="bob@acme.example", user_id="user-bob")
    both = sync_payload("2026-12-01T09:00:00Z", subscribers=[USER, "user-bob"])
    sent = await command(runtime, "google-calendar", "sync_task", both)
    await eventually(lambda: synced(runtime, sent))
    assert TASK.hex in google.calendar(ANN).events and TASK.hex in google.calendar("bob@acme.example").events

    await runtime.pool.execute(
        "UPDATE integration_user_link SET config = config || '{\"syncEvents\": false}' WHERE id = $1", bob
    )
    sent = await command(runtime, "google-calendar", "sync_task", both)
    await eventually(lambda: synced(runtime, sent))

    assert google.calendar("bob@acme.example").events[TASK.hex]["status"] == "cancelled"
    assert google.calendar(ANN).events[TASK.hex]["status"] == "confirmed"
    links = [r["link_id"] for r in await runtime.pool.fetch("SELECT link_id FROM google_calendar_task_events")]
    assert links == [ann]


async def test_update_patches_only_the_fields_given(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, replies: Replies
) -> None:
    integration, _ = await calendar_ready(runtime, google)
    created = await command(
        runtime,
        "google-calendar",
        "create_event",
        {
            "summary": "Review",
            "description": "Bring notes",
            "location": "Room 4",
            "start": {"dateTime": "2026-12-01T10:00:00Z"},
            "end": {"dateTime": "2026-12-01T11:00:00Z"},
        },
        integration_id=integration.id,
        replies=replies,
    )
    event = (await replies.wait(created))["output"]

    updated = await command(
        runtime,
        "google-calendar",
        "update_event",
        {"event_id": event["id"], "summary": "Design review"},
        integration_id=integration.id,
        replies=replies,
    )

    answer = await replies.wait(updated)
    assert answer["output"]["summary"] == "Design review"
    assert answer["output"]["description"] == "Bring notes" and answer["output"]["location"] == "Room 4"
    cal = google.calendar(ANN)
    assert cal.requests[-1] == ("PATCH", event["id"], {"summary": "Design review"})


async def test_create_is_idempotent_and_delete_of_a_gone_event_is_done(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, replies: Replies
) -> None:
    integration, _ = await calendar_ready(runtime, google)
    body = {"summary": "Standup", "start": {"date": "2026-12-01"}, "end": {"date": "2026-12-02"}}
    first = await command(
        runtime, "google-calendar", "create_event", body, integration_id=integration.id, replies=replies
    )
    event_id = (await replies.wait(first))["output"]["id"]

    outcomes = []
    for _ in range(2):
        sent = await command(
            runtime,
            "google-calendar",
            "delete_event",
            {"event_id": event_id},
            integration_id=integration.id,
            replies=replies,
        )
        outcomes.append((await replies.wait(sent))["output"])

    assert outcomes == [{"deleted": True}, {"deleted": False}]  # the second got 410 Gone: done all the same
    listed = await command(
        runtime, "google-calendar", "list_events", {}, integration_id=integration.id, replies=replies
    )
    assert (await replies.wait(listed))["output"]["events"] == []


# --- push channels ---------------------------------------------------------------------------------------


async def channel_ready(
    runtime: Runtime, google: FakeGoogleState, link_id: str, integration: IntegrationRecord
) -> dict[str, Any]:
    sent = await command(
        runtime, "google-calendar", "renew_channel", {"link_id": link_id}, integration_id=integration.id
    )
    await eventually(lambda: synced(runtime, sent))
    [channel] = google.calendar(ANN).channels.values()
    return channel


def notification(
    channel: dict[str, Any], number: int, *, token: str | None = None, state: str = "exists"
) -> dict[str, str]:
    return {
        "X-Goog-Channel-ID": channel["id"],
        "X-Goog-Channel-Token": token if token is not None else channel["token"],
        "X-Goog-Resource-ID": channel["resourceId"],
        "X-Goog-Resource-State": state,
        "X-Goog-Message-Number": str(number),
        "X-Goog-Resource-URI": "https://www.googleapis.com/calendar/v3/calendars/primary/events",
    }


def someone_edits(cal: Calendar, event_id: str, **fields: Any) -> None:
    event = cal.events.setdefault(event_id, {"id": event_id, "status": "confirmed", "kind": "calendar#event"})
    event.update(fields)
    cal.touch(event)


async def test_a_notification_reports_the_changes_once(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, ingress: httpx.AsyncClient, results: Results
) -> None:
    integration, link_id = await calendar_ready(runtime, google)
    cal = google.calendar(ANN)
    someone_edits(cal, "existing01", summary="Already there")
    channel = await channel_ready(runtime, google, link_id, integration)
    assert channel["address"] == "https://iw.example.com/webhooks/google-calendar"
    stored = await runtime.pool.fetchrow("SELECT token_hash, resource_id FROM google_calendar_channels")
    assert channel["token"] not in stored["token_hash"] and stored["resource_id"] == channel["resourceId"]

    first = await ingress.post("/webhooks/google-calendar", headers=notification(channel, 1, state="sync"))
    assert first.status_code == 200  # the channel's hello: nothing to do
    sent = await command(runtime, "google-calendar", "sync_task", sync_payload("2026-12-01T09:00:00Z"))
    await eventually(lambda: synced(runtime, sent))
    someone_edits(cal, "meeting001", summary="Planning", start={"dateTime": "2026-12-03T10:00:00Z"})
    someone_edits(cal, "existing01", status="cancelled")

    for number in (2, 2):  # Google retrying the same message
        response = await ingress.post("/webhooks/google-calendar", headers=notification(channel, number))
        assert response.status_code == 202

    events = await results.wait_for("calendar.event_changed", count=2)
    await worker.wait_idle()
    assert len(results.of("calendar.event_changed")) == 2  # the repeated notification added nothing
    by_id = {e["data"]["event_id"]: e["data"] for e in results.of("calendar.event_changed")}
    assert set(by_id) == {"meeting001", "existing01"}  # the task's event is our own write: not reported
    assert by_id["meeting001"]["summary"] == "Planning" and by_id["meeting001"]["start"] == "2026-12-03T10:00:00Z"
    assert by_id["existing01"]["deleted"] is True and by_id["existing01"]["status"] == "cancelled"
    assert by_id["meeting001"]["user_id"] == USER and events[0]["team_id"] == TEAM

    someone_edits(cal, TASK.hex, summary="Moved by hand", start={"dateTime": "2026-12-05T09:00:00Z"})
    assert (await ingress.post("/webhooks/google-calendar", headers=notification(channel, 3))).status_code == 202
    moved = await eventually(
        lambda: [e for e in results.of("calendar.event_changed") if e["data"]["event_id"] == TASK.hex]
    )
    assert moved[0]["data"]["task_id"] == str(TASK)  # a task's event moved by hand: the platform hears of it


async def test_a_wrong_token_or_unknown_channel_is_refused(
    runtime: Runtime, google: FakeGoogleState, ingress: httpx.AsyncClient
) -> None:
    integration, link_id = await calendar_ready(runtime, google)
    async with _worker(runtime):
        channel = await channel_ready(runtime, google, link_id, integration)

    wrong = await ingress.post("/webhooks/google-calendar", headers=notification(channel, 5, token="guess"))
    missing = await ingress.post("/webhooks/google-calendar", headers=notification(channel, 6, token=""))
    unknown = await ingress.post(
        "/webhooks/google-calendar", headers={**notification(channel, 7), "X-Goog-Channel-ID": "nope"}
    )
    other_resource = await ingress.post(
        "/webhooks/google-calendar", headers={**notification(channel, 8), "X-Goog-Resource-ID": "res-other"}
    )

    assert [wrong.status_code, missing.status_code, unknown.status_code, other_resource.status_code] == [
        401,
        401,
        404,
        401,
    ]
    assert await queue_depth(runtime, runtime.topology.queues("google-calendar")) == 0


async def test_an_expired_sync_token_means_a_full_resync_of_recent_changes(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, ingress: httpx.AsyncClient, results: Results
) -> None:
    integration, link_id = await calendar_ready(runtime, google)
    cal = google.calendar(ANN)
    channel = await channel_ready(runtime, google, link_id, integration)
    await runtime.pool.execute("UPDATE google_calendar_sync SET last_synced_at = now() - interval '1 hour'")
    someone_edits(cal, "oldevent01", summary="Untouched for long", updated="2020-01-01T00:00:00Z")
    cal.events["oldevent01"]["updated"] = "2020-01-01T00:00:00Z"
    someone_edits(cal, "fresh00001", summary="Just changed")
    cal.oldest_sync = cal.seq + 1  # every token we hold is now too old: 410

    assert (await ingress.post("/webhooks/google-calendar", headers=notification(channel, 2))).status_code == 202

    [event] = await results.wait_for("calendar.event_changed")
    assert event["data"]["event_id"] == "fresh00001"
    token = await eventually(lambda: _token_after(runtime, cal.seq))
    assert token == f"st-{cal.seq}"
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_logs WHERE key = 'sync_token_expired'") == 1


async def _token_after(runtime: Runtime, seq: int) -> str | None:
    token = await runtime.pool.fetchval("SELECT sync_token FROM google_calendar_sync")
    return token if token == f"st-{seq}" else None


async def test_renewing_a_channel_replaces_the_old_one(
    runtime: Runtime, google: FakeGoogleState, worker: Worker
) -> None:
    integration, link_id = await calendar_ready(runtime, google)
    first = await channel_ready(runtime, google, link_id, integration)

    sent = await command(
        runtime, "google-calendar", "renew_channel", {"link_id": link_id}, integration_id=integration.id
    )
    await eventually(lambda: synced(runtime, sent))

    cal = google.calendar(ANN)
    assert list(cal.channels) != [first["id"]] and len(cal.channels) == 1  # the old one was stopped
    ids = [r["id"] for r in await runtime.pool.fetch("SELECT id FROM google_calendar_channels")]
    assert ids == list(cal.channels)


class _worker:
    def __init__(self, runtime: Runtime) -> None:
        self.worker = Worker(runtime)

    async def __aenter__(self) -> Worker:
        await self.worker.start()
        return self.worker

    async def __aexit__(self, *_: object) -> None:
        await self.worker.stop()


async def test_turning_push_off_or_uninstalling_stops_the_channels(
    runtime: Runtime, google: FakeGoogleState, worker: Worker
) -> None:
    from worker.platform.install import uninstall  # noqa: PLC0415

    integration, link_id = await calendar_ready(runtime, google)
    await channel_ready(runtime, google, link_id, integration)
    cal = google.calendar(ANN)

    await install_type(runtime, "google-calendar", {"pushNotifications": False})  # reconfigured: renews, then stops
    await eventually(lambda: not cal.channels)
    await eventually(lambda: _no_channel_rows(runtime))
    await install_type(runtime, "google-calendar", {})  # on again
    await eventually(lambda: len(cal.channels) == 1)
    await eventually(lambda: _channel_rows(runtime, 1))
    await worker.wait_idle()
    await uninstall(runtime, integration.id, TEAM, source="test")

    assert cal.channels == {}


async def _no_channel_rows(runtime: Runtime) -> bool:
    return await _channel_rows(runtime, 0)


async def _channel_rows(runtime: Runtime, count: int) -> bool:
    return int(await runtime.pool.fetchval("SELECT count(*) FROM google_calendar_channels")) == count


async def test_a_late_sync_of_an_older_task_state_does_not_undo_a_newer_one(
    runtime: Runtime, google: FakeGoogleState, worker: Worker
) -> None:
    integration, _ = await calendar_ready(runtime, google)
    cal = google.calendar(ANN)
    newer = sync_payload("2026-12-02", updated_at="2026-11-25T10:05:00Z")
    sent = await command(runtime, "google-calendar", "sync_task", newer)
    await eventually(lambda: synced(runtime, sent))
    requests = len(cal.requests)

    # the state before it (a retry, a redelivery) arrives late: it must not bring back Dec 1
    older = sync_payload("2026-12-01T15:00:00+01:00", updated_at="2026-11-25T10:00:00Z")
    sent = await command(runtime, "google-calendar", "sync_task", older)
    await eventually(lambda: synced(runtime, sent))
    assert cal.events[TASK.hex]["start"] == {"date": "2026-12-02"}
    assert len(cal.requests) == requests  # Google was not called
    logged = await runtime.pool.fetchval(
        "SELECT message FROM integration_logs WHERE integration_id = $1 AND key = 'stale_sync_skipped'",
        integration.id,
    )
    assert logged == f"task {TASK}: a newer state was already synced"

    # the due date removed (newer), then the older state with a due date arrives late: no revival
    sent = await command(runtime, "google-calendar", "sync_task", sync_payload(None, updated_at="2026-11-25T10:10:00Z"))
    await eventually(lambda: synced(runtime, sent))
    assert cal.events[TASK.hex]["status"] == "cancelled"
    sent = await command(runtime, "google-calendar", "sync_task", newer)
    await eventually(lambda: synced(runtime, sent))
    assert cal.events[TASK.hex]["status"] == "cancelled"

    # a state newer than all of them applies
    sent = await command(
        runtime, "google-calendar", "sync_task", sync_payload("2026-12-03", updated_at="2026-11-26T08:00:00Z")
    )
    await eventually(lambda: synced(runtime, sent))
    assert cal.events[TASK.hex]["status"] == "confirmed" and cal.events[TASK.hex]["start"] == {"date": "2026-12-03"}


async def test_a_sync_without_a_time_zone_on_updated_at_is_refused(
    runtime: Runtime, google: FakeGoogleState, worker: Worker
) -> None:
    await calendar_ready(runtime, google)
    await command(runtime, "google-calendar", "sync_task", sync_payload("2026-12-02", updated_at="2026-11-25T10:05:00"))
    parked = await eventually(lambda: dead.list_parked(runtime.broker, None))
    assert "updated_at needs a time zone" in parked[0].error
    assert google.calendar(ANN).events == {}
