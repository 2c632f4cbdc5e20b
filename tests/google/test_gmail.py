"""Gmail intake end to end: a Pub/Sub push (OIDC-signed) in, `task.intake` out for the mail that
passes the filters, exactly once, within the daily cap, whatever crashes in between."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

from integrations.gmail.config import GmailSettings
from tests.conftest import TEAM, Results, eventually, queue_depth
from tests.fakes.google import FakeGoogleState
from tests.google.conftest import (
    ANN,
    USER,
    install_type,
    link_user,
    mail,
    push_claims,
    push_request,
    watched,
)
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
FILTERS = {
    "filters": {
        "sendersBlacklist": ["@ads.example"],
        "subjectMatching": r"bug|invoice|rechnung",
    }
}


async def gmail_ready(
    runtime: Runtime, google: FakeGoogleState, config: dict[str, Any] | None = None
) -> tuple[Any, str]:
    gmail = await install_type(runtime, "gmail", config)
    link_id, _, _ = await link_user(runtime, google, gmail)
    await watched(runtime, google, gmail, link_id)
    return gmail, link_id


async def intake_rows(runtime: Runtime) -> dict[str, str | None]:
    rows = await runtime.pool.fetch("SELECT message_id, outcome, reason FROM gmail_messages")
    return {r["message_id"]: r["reason"] if r["outcome"] == "skipped" else "accepted" for r in rows}


async def cursor(runtime: Runtime, link_id: str) -> int:
    return int(await runtime.pool.fetchval("SELECT history_id FROM gmail_mailboxes WHERE link_id = $1", link_id))


async def test_a_verified_push_takes_in_matching_mail_only(
    runtime: Runtime,
    google: FakeGoogleState,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
) -> None:
    _, link_id = await gmail_ready(runtime, google, FILTERS)
    box = google.mailbox(ANN)
    bug = box.deliver(mail("Bob Client <Bob@Client.example>", "Bug: login fails", "Steps:\n1. open\n2. crash"))
    promo = box.deliver(mail("shop@store.example", "Bug sale!"), labels=("INBOX", "CATEGORY_PROMOTIONS"))
    social = box.deliver(mail("friend@social.example", "bug report liked"), labels=("INBOX", "CATEGORY_SOCIAL"))
    denied = box.deliver(mail("Deals <deals@ads.example>", "Bug bounty offer"))
    off_topic = box.deliver(mail("bob@client.example", "Lunch on Friday?"))
    invoice = box.deliver(
        mail(
            "=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <juergen@lieferant.example>",
            "=?utf-8?b?UmVjaG51bmcgZsO8ciBNw6RyeiDigqw=?=",  # "Rechnung für März €"
            None,
            html="<html><head><style>p{}</style></head><body><p>Betrag:&nbsp;<b>120&nbsp;€</b></p>"
            "<ul><li>Posten 1</li><li>Posten 2</li></ul><script>x()</script></body></html>",
            charset="iso-8859-15",
        )
    )

    body, headers = push_request(google)
    response = await ingress.post("/webhooks/gmail", content=body, headers=headers)

    assert response.status_code == 202
    events = await results.wait_for("task.intake", count=2)
    by_id = {e["data"]["metadata"]["message_id"]: e for e in events}
    assert set(by_id) == {bug, invoice}
    first = by_id[bug]["data"]
    assert first["title"] == "Bug: login fails"
    assert first["body"] == "Steps:\n1. open\n2. crash"
    assert first["source"] == "gmail" and first["source_id"] == f"{ANN}/{bug}" and first["kind"] == "email"
    assert first["author"] == "Bob Client" and first["author_external_id"] == "bob@client.example"
    assert first["user_id"] == USER and by_id[bug]["team_id"] == TEAM
    second = by_id[invoice]["data"]
    assert second["title"] == "Rechnung für März €"
    assert second["author"] == "Jürgen Müller"
    assert second["body"] == "Betrag: 120 €\n\n- Posten 1\n- Posten 2"
    await eventually(lambda: _done(runtime, 6))
    assert await intake_rows(runtime) == {
        bug: "accepted",
        invoice: "accepted",
        promo: "promotions",
        social: "social",
        denied: "sender_denied",
        off_topic: "subject_not_matching",
    }
    assert await cursor(runtime, link_id) == box.history_id
    await worker.wait_idle()
    assert len(results.of("task.intake")) == 2


async def _done(runtime: Runtime, count: int) -> bool:
    return int(await runtime.pool.fetchval("SELECT count(*) FROM gmail_messages")) >= count


async def test_the_allow_list_and_body_pattern_apply(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, ingress: httpx.AsyncClient, results: Results
) -> None:
    config = {"filters": {"sendersWhitelist": ["boss@acme.example", "@client.example"], "bodyMatching": "urgent"}}
    await gmail_ready(runtime, google, config)
    box = google.mailbox(ANN)
    boss = box.deliver(mail("The Boss <BOSS@acme.example>", "Hi", "This is URGENT, please"))
    client = box.deliver(mail("x@client.example", "Hi", "urgent too"))
    calm = box.deliver(mail("boss@acme.example", "Hi", "no hurry"))
    stranger = box.deliver(mail("someone@else.example", "Hi", "urgent!"))

    body, headers = push_request(google)
    assert (await ingress.post("/webhooks/gmail", content=body, headers=headers)).status_code == 202

    events = await results.wait_for("task.intake", count=2)
    await eventually(lambda: _done(runtime, 4))
    assert {e["data"]["metadata"]["message_id"] for e in events} == {boss, client}
    rows = await intake_rows(runtime)
    assert rows[calm] == "body_not_matching" and rows[stranger] == "sender_not_allowed"


async def test_forged_expired_or_foreign_push_tokens_are_refused(
    runtime: Runtime, google: FakeGoogleState, ingress: httpx.AsyncClient
) -> None:
    await gmail_ready(runtime, google)
    google.mailbox(ANN).deliver(mail("bob@client.example", "Bug"))
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "forged": google.sign_push(push_claims(), key=other_key),
        "expired": google.sign_push(push_claims(exp=1_700_000_000, iat=1_699_996_400)),
        "wrong audience": google.sign_push(push_claims(aud="https://evil.example/webhooks/gmail")),
        "wrong account": google.sign_push(push_claims(email="someone@evil.iam.gserviceaccount.com")),
        "unverified email": google.sign_push(push_claims(email_verified=False)),
        "wrong issuer": google.sign_push(push_claims(iss="https://evil.example")),
        "unknown key": google.sign_push(push_claims(), kid="not-a-google-key"),
        "not a jwt": "not-a-jwt",
    }
    for name, token in cases.items():
        body, headers = push_request(google, token=token)
        response = await ingress.post("/webhooks/gmail", content=body, headers=headers)
        assert response.status_code == 401, name
        assert "push authentication failed" in response.json()["error"], name
    body, headers = push_request(google)
    headers.pop("Authorization")
    assert (await ingress.post("/webhooks/gmail", content=body, headers=headers)).status_code == 401
    assert await queue_depth(runtime, runtime.topology.queues("gmail")) == 0
    assert google.jwks_requests <= 2  # keys cached; one refetch for the unknown key id


async def test_a_malformed_push_is_400_and_an_unknown_mailbox_is_acknowledged(
    runtime: Runtime, google: FakeGoogleState, ingress: httpx.AsyncClient
) -> None:
    await gmail_ready(runtime, google)
    _, headers = push_request(google)
    response = await ingress.post(
        "/webhooks/gmail", content=b'{"message": {"messageId": "1", "data": "e30="}}', headers=headers
    )
    assert response.status_code == 400
    body, headers = push_request(google, address="stranger@else.example")
    response = await ingress.post("/webhooks/gmail", content=body, headers=headers)
    assert response.status_code == 200 and response.json() == {"status": "ignored", "reason": "no linked mailbox"}
    assert await queue_depth(runtime, runtime.topology.queues("gmail")) == 0


async def test_a_redelivered_push_and_close_pushes_take_mail_in_once(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, ingress: httpx.AsyncClient, results: Results
) -> None:
    await gmail_ready(runtime, google)
    box = google.mailbox(ANN)
    ids = [box.deliver(mail("bob@client.example", f"Bug {n}")) for n in range(3)]
    google.hold_message_get = threading.Event()  # keep the first sync busy while the others arrive

    pushes = [push_request(google, message_id="42"), push_request(google, message_id="42")]  # a redelivery
    pushes += [push_request(google) for _ in range(3)]  # Gmail notifies once per change
    for body, headers in pushes:
        assert (await ingress.post("/webhooks/gmail", content=body, headers=headers)).status_code == 202
    await asyncio.to_thread(google.message_get_started.wait, 10)
    pushed = {f"gmail:{orjson.loads(body)['message']['messageId']}" for body, _ in pushes}

    async def notifications_handled() -> bool:  # every push fanned out while the first sync is held
        done = await runtime.pool.fetchval("SELECT count(*) FROM processed_events WHERE id = ANY($1)", list(pushed))
        return bool(done == len(pushed))

    await eventually(notifications_handled)
    google.hold_message_get.set()

    await results.wait_for("task.intake", count=3)
    await eventually(lambda: _all_consumed(runtime, worker))
    intake = results.of("task.intake")
    assert sorted(e["data"]["metadata"]["message_id"] for e in intake) == sorted(ids)
    assert box.get_calls == 3  # every message fetched once


async def _all_consumed(runtime: Runtime, worker: Worker) -> bool:
    if await queue_depth(runtime, runtime.topology.queues("gmail")):
        return False
    await worker.wait_idle()
    return int(await runtime.pool.fetchval("SELECT count(*) FROM leases")) == 0


async def test_the_daily_cap_stops_at_the_cap(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, ingress: httpx.AsyncClient, results: Results
) -> None:
    _, link_id = await gmail_ready(runtime, google, {"dailyIntakeCap": 2})
    box = google.mailbox(ANN)
    first = [box.deliver(mail("bob@client.example", f"Bug {n}")) for n in range(4)]

    body, headers = push_request(google)
    assert (await ingress.post("/webhooks/gmail", content=body, headers=headers)).status_code == 202
    await eventually(lambda: _done(runtime, 4))
    later = box.deliver(mail("bob@client.example", "Bug 5"))
    body, headers = push_request(google)
    assert (await ingress.post("/webhooks/gmail", content=body, headers=headers)).status_code == 202
    await eventually(lambda: _done(runtime, 5))
    await worker.wait_idle()

    assert [e["data"]["metadata"]["message_id"] for e in results.of("task.intake")] == first[:2]
    rows = await intake_rows(runtime)
    assert [rows[m] for m in [*first, later]] == ["accepted", "accepted", "daily_cap", "daily_cap", "daily_cap"]
    assert box.get_calls == 2  # nothing is fetched once the cap is reached
    logged = await runtime.pool.fetchval(
        "SELECT count(*) FROM integration_logs WHERE key = 'daily_cap_reached' AND integration_user_link_id = $1",
        link_id,
    )
    assert logged == 2


async def test_an_expired_cursor_falls_back_to_a_bounded_recent_sync(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, ingress: httpx.AsyncClient, results: Results
) -> None:
    _, link_id = await gmail_ready(runtime, google)
    box = google.mailbox(ANN)
    old = box.deliver(mail("bob@client.example", "Old bug"))
    await runtime.pool.execute(
        "INSERT INTO gmail_messages (team_id, link_id, integration_id, message_id, outcome)"
        " SELECT team_id, link_id, integration_id, $1, 'accepted' FROM gmail_mailboxes",
        old,
    )
    new = [box.deliver(mail("bob@client.example", f"New bug {n}")) for n in range(2)]
    box.oldest_history = box.history_id + 1  # Google dropped the history after our cursor

    body, headers = push_request(google)
    assert (await ingress.post("/webhooks/gmail", content=body, headers=headers)).status_code == 202

    events = await results.wait_for("task.intake", count=2)
    assert sorted(e["data"]["metadata"]["message_id"] for e in events) == sorted(new)  # "old" was taken in before
    await eventually(lambda: _cursor_is(runtime, link_id, box.history_id))
    logged = await runtime.pool.fetchval("SELECT count(*) FROM integration_logs WHERE key = 'history_expired'")
    assert logged == 1


async def _cursor_is(runtime: Runtime, link_id: str, value: int) -> bool:
    return await cursor(runtime, link_id) == value


async def test_history_is_read_across_pages_in_bounded_runs(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, ingress: httpx.AsyncClient, results: Results
) -> None:
    runtime.integration_settings["gmail"] = GmailSettings(max_messages_per_sync=3)
    google.history_page_size = 2
    _, link_id = await gmail_ready(runtime, google)
    box = google.mailbox(ANN)
    ids = [box.deliver(mail("bob@client.example", f"Bug {n}")) for n in range(8)]

    body, headers = push_request(google)
    assert (await ingress.post("/webhooks/gmail", content=body, headers=headers)).status_code == 202

    events = await results.wait_for("task.intake", count=8)
    assert [e["data"]["metadata"]["message_id"] for e in events] == ids  # in order, each once
    await eventually(lambda: _cursor_is(runtime, link_id, box.history_id))
    await worker.wait_idle()
    assert len(results.of("task.intake")) == 8


async def test_a_crash_between_fetching_and_committing_loses_and_duplicates_nothing(
    runtime: Runtime, env: dict[str, str], google: FakeGoogleState, ingress: httpx.AsyncClient, results: Results
) -> None:
    _, link_id = await gmail_ready(runtime, google)
    box = google.mailbox(ANN)
    ids = [box.deliver(mail("bob@client.example", f"Bug {n}")) for n in range(3)]
    google.hold_message_get = threading.Event()
    crashing = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "--types", "gmail"],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body, headers = push_request(google)
        assert (await ingress.post("/webhooks/gmail", content=body, headers=headers)).status_code == 202
        assert await asyncio.to_thread(google.message_get_started.wait, 20), "the worker never fetched the mail"
        crashing.send_signal(signal.SIGKILL)  # fetched, not committed: a hard crash
        crashing.wait(timeout=10)
    finally:
        if crashing.poll() is None:
            crashing.kill()
    assert await runtime.pool.fetchval("SELECT count(*) FROM gmail_messages") == 0
    assert await cursor(runtime, link_id) < box.history_id  # the cursor did not move
    google.hold_message_get.set()
    box.deliver(mail("bob@client.example", "Bug 3"))
    second_body, second_headers = push_request(google)  # and a new notification meanwhile
    assert (await ingress.post("/webhooks/gmail", content=second_body, headers=second_headers)).status_code == 202

    survivor = Worker(runtime)
    await survivor.start()
    try:
        events = await results.wait_for("task.intake", count=4, timeout=30)
        await eventually(lambda: _all_consumed(runtime, survivor), timeout=30)
    finally:
        await survivor.stop()
    source_ids = [e["data"]["source_id"] for e in results.of("task.intake")]
    assert len(source_ids) == len(set(source_ids)) == 4
    assert {e["data"]["metadata"]["message_id"] for e in events} >= set(ids)
    assert await cursor(runtime, link_id) == box.history_id


async def test_reinstalling_rewatches_and_uninstalling_stops_the_watches(
    runtime: Runtime, google: FakeGoogleState, worker: Worker
) -> None:
    from worker.platform.install import uninstall  # noqa: PLC0415

    gmail, link_id = await gmail_ready(runtime, google)
    box = google.mailbox(ANN)

    await install_type(runtime, "gmail", {"dailyIntakeCap": 10})  # reconfigured
    await eventually(lambda: box.watch_calls == 1)
    await eventually(
        lambda: runtime.pool.fetchval("SELECT 1 FROM integration_logs WHERE key = 'watch_renewed'")
    )  # the renewal committed
    await worker.wait_idle()
    await uninstall(runtime, gmail.id, TEAM, source="test")

    assert box.stop_calls == 1
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link WHERE id = $1", link_id) == 0
