"""Gmail actions as a caller (an agent's tool call over the broker) sees them: list emails,
create a proper RFC 5322 draft (once, even when the command is retried), send it."""

from __future__ import annotations

import email
import email.policy

from schemas.envelope import Envelope, dumps_envelope
from tests.conftest import eventually
from tests.fakes.google import FakeGoogleState
from tests.google.conftest import ANN, Replies, command, install_type, link_user, mail, parked
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker


async def test_list_recent_emails(runtime: Runtime, google: FakeGoogleState, worker: Worker, replies: Replies) -> None:
    gmail = await install_type(runtime, "gmail")
    await link_user(runtime, google, gmail)
    box = google.mailbox(ANN)
    first = box.deliver(mail("Bob <bob@client.example>", "First", "one"))
    second = box.deliver(mail("carol@client.example", "=?utf-8?q?Gr=C3=BC=C3=9Fe?=", None, html="<p>zwei</p>"))

    sent = await command(runtime, "gmail", "list_emails", {"max_results": 5}, integration_id=gmail.id, replies=replies)

    answer = await replies.wait(sent)
    assert answer["ok"] is True
    emails = answer["output"]["emails"]
    assert [e["id"] for e in emails] == [second, first]  # newest first
    assert emails[0]["subject"] == "Grüße" and emails[0]["body"] == "zwei"
    assert emails[1]["sender"] == "Bob <bob@client.example>" and emails[1]["to"] == [ANN]
    assert emails[1]["url"].endswith(f"#all/{first}")


async def test_create_a_draft_then_send_it(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, replies: Replies
) -> None:
    gmail = await install_type(runtime, "gmail")
    await link_user(runtime, google, gmail)
    payload = {
        "to": ["bob@client.example"],
        "cc": ["carol@client.example"],
        "bcc": ["audit@acme.example"],
        "subject": "Réunion à 10h ✓",
        "body": "Bonjour,\nà demain.",
        "html": "<p>Bonjour,<br>à demain.</p>",
        "reply_to": "team@acme.example",
    }

    sent = await command(runtime, "gmail", "create_draft", payload, integration_id=gmail.id, replies=replies)

    answer = await replies.wait(sent)
    assert answer["ok"] is True, answer
    draft_id = answer["output"]["draft_id"]
    [stored] = google.mailbox(ANN).drafts.values()
    assert b"\r\n" in stored.raw and b"\n\n" not in stored.raw.replace(b"\r\n", b"")  # CRLF line ends
    parsed = email.message_from_bytes(stored.raw, policy=email.policy.default)
    assert parsed["From"] == ANN and parsed["To"] == "bob@client.example" and parsed["Cc"] == "carol@client.example"
    assert parsed["Bcc"] == "audit@acme.example" and parsed["Reply-To"] == "team@acme.example"
    assert parsed["Subject"] == "Réunion à 10h ✓"
    assert "=?utf-8?" in stored.raw.decode("ascii").split("Subject:")[1].split("\r\n")[0]  # an encoded word
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert text.replace("\r\n", "\n") == "Bonjour,\nà demain.\n"
    assert parsed["Message-ID"].endswith("@acme.example>")

    sent_again = await command(
        runtime, "gmail", "send_draft", {"draft_id": draft_id}, integration_id=gmail.id, replies=replies
    )

    answer = await replies.wait(sent_again)
    assert answer["ok"] is True and answer["output"]["already_sent"] is False
    assert [m.id for m in google.mailbox(ANN).sent] == [answer["output"]["message_id"]]
    assert google.mailbox(ANN).drafts == {}


async def test_a_retried_create_draft_makes_one_draft(
    runtime: Runtime, google: FakeGoogleState, worker: Worker, replies: Replies
) -> None:
    gmail = await install_type(runtime, "gmail")
    await link_user(runtime, google, gmail)
    payload = {"to": ["bob@client.example"], "subject": "Hi", "body": "Hello"}
    first = await command(runtime, "gmail", "create_draft", payload, integration_id=gmail.id, replies=replies)
    draft = (await replies.wait(first))["output"]

    # The same command delivered again (a retry after a crash): it finds its draft.

    again = Envelope(
        id=first,
        type="gmail",
        kind="command",
        name="create_draft",
        integration_id=gmail.id,
        headers={"x-user-id": "user-ann"},
        payload=payload,
        attempt=1,
    )
    await runtime.pool.execute("DELETE FROM processed_events WHERE id = $1", first)  # as if never committed
    await runtime.broker.publish(
        runtime.topology.incoming,
        again.routing_key,
        dumps_envelope(again),
        message_id=first,
        reply_to=replies.queue.name,
        correlation_id="again",
    )

    repeated = (await replies.wait("again"))["output"]
    assert repeated == draft
    assert len(google.mailbox(ANN).drafts) == 1


async def test_an_action_without_a_linked_user_is_parked_with_the_reason(
    runtime: Runtime, google: FakeGoogleState, worker: Worker
) -> None:
    gmail = await install_type(runtime, "gmail")
    await command(runtime, "gmail", "list_emails", {}, integration_id=gmail.id, user_id="user-nobody")

    [message] = await eventually(lambda: parked(runtime))
    assert "user-nobody has not linked an account to this integration" in message["headers"]["x-error"]
