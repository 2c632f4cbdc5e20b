"""WhatsApp with one number for many teams (IW_WHATSAPP_SHARED_NUMBER, MIMRAI's mode): teams install
without a number; a message to the shared number reaches the team its sender linked in (the newest
link when several); an unlinked sender gets a link whose token names no team, and is linked in the
team of the user who confirms; a team's own number keeps working beside it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.chat.conftest import (
    WHATSAPP_NUMBER,
    confirm_link,
    link_count,
    link_directly,
    link_token_in,
    parked,
    post_whatsapp,
    settled,
    whatsapp_message,
)
from tests.conftest import TEAM, Results, eventually
from tests.fakes.twilio import FakeTwilioState
from tests.helpers import publish
from worker.platform.install import InstallError, InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

SHARED = "+18634347933"
OTHER_TEAM = "team-2"
THIRD_TEAM = "team-3"
ALICE = "+15551230001"


@pytest.fixture
def env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("IW_WHATSAPP_SHARED_NUMBER", f"whatsapp:{SHARED}")
    return {**env, "IW_WHATSAPP_SHARED_NUMBER": f"whatsapp:{SHARED}"}


@pytest.fixture
async def shared(runtime: Runtime, twilio: FakeTwilioState) -> dict[str, Any]:
    """Two teams on the shared number."""
    mine, _ = await install(runtime, InstallRequest("whatsapp", TEAM, {}, source="test"))
    theirs, _ = await install(runtime, InstallRequest("whatsapp", OTHER_TEAM, {}, source="test"))
    return {TEAM: mine, OTHER_TEAM: theirs}


async def test_an_unlinked_sender_links_in_the_team_of_whoever_confirms_then_reaches_that_team(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    twilio: FakeTwilioState,
    shared: dict[str, Any],
    env: dict[str, str],
) -> None:
    await post_whatsapp(ingress, whatsapp_message("hi", to=SHARED))

    link = (await eventually(lambda: twilio.messages))[0]
    assert (link["To"], link["From"]) == (f"whatsapp:{ALICE}", f"whatsapp:{SHARED}")
    token = link_token_in(link["Body"])
    # a team without an integration on the shared number cannot take it
    nowhere = await confirm_link(ingress, env, token, "user-carol", team_id=THIRD_TEAM)
    assert nowhere.status_code == 404 and await link_count(runtime) == 0

    confirmed = await confirm_link(ingress, env, token, "user-alice", team_id=OTHER_TEAM)

    assert confirmed.status_code == 201, confirmed.text
    assert confirmed.json()["integration_id"] == shared[OTHER_TEAM].id
    row = await runtime.pool.fetchrow("SELECT * FROM integration_user_link")
    assert (row["team_id"], row["integration_id"], row["external_user_id"], row["user_id"]) == (
        OTHER_TEAM,
        shared[OTHER_TEAM].id,
        ALICE,
        "user-alice",
    )
    again = await confirm_link(ingress, env, token, "user-alice-1", team_id=TEAM)  # the same token, another team
    assert again.status_code == 409 and "already used" in again.json()["error"], again.text
    assert await link_count(runtime) == 1
    linked = await eventually(lambda: twilio.messages[1:])  # "your account is linked", from the shared number
    assert linked[0]["From"] == f"whatsapp:{SHARED}" and linked[0]["To"] == f"whatsapp:{ALICE}"

    await post_whatsapp(ingress, whatsapp_message("what is due today?", to=SHARED, sid="SM" + "5" * 32))

    event = (await results.wait_for("message.received"))[0]
    assert (event["team_id"], event["integration_id"]) == (OTHER_TEAM, shared[OTHER_TEAM].id)
    data = event["data"]
    assert data["user_id"] == "user-alice" and data["message_id"] == "SM" + "5" * 32
    assert data["text"] == "what is due today?" and data["reply"]["integration_id"] == shared[OTHER_TEAM].id
    ack = (await eventually(lambda: twilio.messages[2:]))[0]
    assert ack["From"] == f"whatsapp:{SHARED}" and ack["Body"] == "Got it, working on it…"

    reply = data["reply"]
    await publish(
        runtime,
        "whatsapp",
        "command",
        reply["action"],
        {**reply["input"], reply["text_field"]: "Two tasks."},
        integration_id=reply["integration_id"],
    )
    answer = (await eventually(lambda: twilio.messages[3:]))[0]
    assert (answer["From"], answer["To"], answer["Body"]) == (f"whatsapp:{SHARED}", f"whatsapp:{ALICE}", "Two tasks.")
    await settled(runtime, worker, "whatsapp")
    assert len(twilio.messages) == 4 and len(results.of("message.received")) == 1
    logged = await runtime.pool.fetchval(
        "SELECT count(*) FROM integration_logs WHERE key = 'message_received' AND integration_id = $1",
        shared[OTHER_TEAM].id,
    )
    assert logged == 1
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_logs WHERE team_id = $1", TEAM) == 1  # install


async def test_a_sender_linked_in_two_teams_reaches_the_team_of_the_newest_link(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    twilio: FakeTwilioState,
    shared: dict[str, Any],
) -> None:
    await link_directly(runtime, shared[TEAM], ALICE, "user-alice")
    await link_directly(runtime, shared[OTHER_TEAM], ALICE, "user-alice-2")

    await post_whatsapp(ingress, whatsapp_message("first", to=SHARED))

    first = (await results.wait_for("message.received"))[0]
    assert (first["team_id"], first["data"]["user_id"]) == (OTHER_TEAM, "user-alice-2")

    # the older link made again later becomes the newest
    await runtime.pool.execute("DELETE FROM integration_user_link WHERE team_id = $1", TEAM)
    await link_directly(runtime, shared[TEAM], ALICE, "user-alice")
    await post_whatsapp(ingress, whatsapp_message("second", to=SHARED))

    second = (await results.wait_for("message.received", 2))[1]
    assert (second["team_id"], second["data"]["user_id"], second["data"]["text"]) == (TEAM, "user-alice", "second")
    await settled(runtime, worker, "whatsapp")
    assert len(results.of("message.received")) == 2


async def test_a_teams_own_number_routes_by_number_and_its_links_do_not_count_on_the_shared_one(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    twilio: FakeTwilioState,
    shared: dict[str, Any],
) -> None:
    own, _ = await install(runtime, InstallRequest("whatsapp", THIRD_TEAM, {"number": WHATSAPP_NUMBER}))
    await link_directly(runtime, own, ALICE, "user-alice-3")
    await link_directly(runtime, shared[TEAM], ALICE, "user-alice")

    await post_whatsapp(ingress, whatsapp_message("to the team's number"))  # To: WHATSAPP_NUMBER

    event = (await results.wait_for("message.received"))[0]
    assert (event["team_id"], event["integration_id"], event["data"]["user_id"]) == (THIRD_TEAM, own.id, "user-alice-3")
    ack = (await eventually(lambda: twilio.messages))[0]
    assert ack["From"] == f"whatsapp:{WHATSAPP_NUMBER}"

    # Bob linked only with the team's own number: on the shared number he is nobody yet
    await link_directly(runtime, own, "+15551230002", "user-bob")
    await post_whatsapp(ingress, whatsapp_message("hello?", sender="+15551230002", to=SHARED))
    link = (await eventually(lambda: twilio.messages[1:]))[0]
    assert link["From"] == f"whatsapp:{SHARED}" and "integrations/associate?token=" in link["Body"]
    await settled(runtime, worker, "whatsapp")
    assert len(results.of("message.received")) == 1 and await parked(runtime) == []


async def test_installs_say_which_number_and_the_shared_one_belongs_to_no_team(
    runtime: Runtime, twilio: FakeTwilioState
) -> None:
    with pytest.raises(InstallError) as taken:
        await install(runtime, InstallRequest("whatsapp", TEAM, {"number": SHARED}))
    assert taken.value.status == 422 and "shared number" in taken.value.message

    first, new = await install(runtime, InstallRequest("whatsapp", TEAM, {}))
    again, new_again = await install(runtime, InstallRequest("whatsapp", TEAM, {}))
    assert new and not new_again and again.id == first.id  # one install on the shared number per team
    assert first.external_team_id is None
    own, _ = await install(runtime, InstallRequest("whatsapp", TEAM, {"number": WHATSAPP_NUMBER}))
    assert own.id != first.id and own.external_team_id == WHATSAPP_NUMBER  # beside it, a number of its own
    assert await runtime.pool.fetchval("SELECT count(*) FROM integrations") == 2
