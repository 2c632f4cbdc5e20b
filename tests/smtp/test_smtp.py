"""SMTP against a real local server: installs are checked by logging in, mail arrives over TLS
with the right headers and a Message-ID derived from the command, 4xx is retried, 5xx parked."""

from __future__ import annotations

import email
import email.policy

import pytest

from tests.conftest import TEAM, eventually
from tests.google.conftest import Replies, command, parked
from tests.smtp.conftest import SMTP_PASSWORD, SMTP_USER, MailServer, free_port, smtp_config
from worker.platform.install import InstallError, InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker
from worker.sdk import IntegrationRecord, derived_id

# The implicit-TLS server takes AUTH on its TLS socket; aiosmtpd only counts STARTTLS as TLS and warns.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

MESSAGE = {
    "to": "bob@client.example",
    "cc": ["carol@client.example"],
    "bcc": ["audit@acme.example"],
    "subject": "Votre facture de décembre ✓",
    "text": "Bonjour Bob,\nla facture est prête.",
    "html": "<p>Bonjour Bob,<br>la facture est <b>prête</b>.</p>",
    "reply_to": "billing@acme.example",
}


async def install_smtp(runtime: Runtime, config: dict[str, object]) -> IntegrationRecord:
    record, _ = await install(runtime, InstallRequest("smtp", TEAM, config, source="test"))
    return record


async def test_an_email_reaches_the_server_with_the_right_headers(
    runtime: Runtime, worker: Worker, replies: Replies, starttls_server: MailServer
) -> None:
    smtp = await install_smtp(runtime, smtp_config(starttls_server))
    assert starttls_server.logins == [(SMTP_USER.encode(), True)]  # install logged in to check
    stored = await runtime.pool.fetchval("SELECT config->>'password' FROM integrations WHERE id = $1", smtp.id)
    assert stored.startswith("enc:v1:") and SMTP_PASSWORD not in stored

    sent = await command(runtime, "smtp", "send_email", MESSAGE, integration_id=smtp.id, user_id=None, replies=replies)

    answer = await replies.wait(sent)
    expected_id = f"<{derived_id(sent, 'smtp-message')}@acme.example>"
    assert answer == {
        "ok": True,
        "status": "succeeded",
        "output": {
            "message_id": expected_id,
            "accepted": ["bob@client.example", "carol@client.example", "audit@acme.example"],
            "rejected": {},
        },
    }
    [got] = starttls_server.received
    assert got.tls and got.login == SMTP_USER.encode()
    assert got.mail_from == "bot@acme.example"
    assert got.rcpt_tos == ["bob@client.example", "carol@client.example", "audit@acme.example"]
    message = email.message_from_bytes(got.data, policy=email.policy.default)
    assert message["From"] == "Acme Bot <bot@acme.example>"
    assert message["To"] == "bob@client.example" and message["Cc"] == "carol@client.example"
    assert message["Bcc"] is None and b"audit@acme.example" not in got.data  # bcc only in the envelope
    assert message["Reply-To"] == "billing@acme.example"
    assert message["Subject"] == "Votre facture de décembre ✓"
    assert message["Message-ID"] == expected_id and message["Date"] is not None
    assert message.get_content_type() == "multipart/alternative"
    html = message.get_body(preferencelist=("html",))
    assert html is not None and "<b>prête</b>" in html.get_content()
    assert max(got.data) < 128  # 7-bit on the wire
    logged = await runtime.pool.fetchrow("SELECT level, details FROM integration_logs WHERE key = 'email_sent'")
    assert logged["level"] == "info" and logged["details"]["message_id"] == expected_id


async def test_implicit_tls(
    runtime: Runtime, worker: Worker, replies: Replies, implicit_tls_server: MailServer
) -> None:
    smtp = await install_smtp(runtime, smtp_config(implicit_tls_server, tls="implicit"))

    sent = await command(
        runtime, "smtp", "send_email", {"to": ["bob@client.example"], "subject": "Hi", "text": "Hello"},
        integration_id=smtp.id, user_id=None, replies=replies,
    )  # fmt: skip

    assert (await replies.wait(sent))["ok"] is True
    [got] = implicit_tls_server.received
    assert got.tls and got.rcpt_tos == ["bob@client.example"]


async def test_a_5xx_is_parked_with_its_reason(runtime: Runtime, worker: Worker, starttls_server: MailServer) -> None:
    smtp = await install_smtp(runtime, smtp_config(starttls_server))
    starttls_server.refuse_rcpt["nobody@client.example"] = "550 5.1.1 <nobody@client.example>: Recipient unknown"

    sent = await command(
        runtime, "smtp", "send_email", {"to": "nobody@client.example", "subject": "Hi", "text": "Hello"},
        integration_id=smtp.id, user_id=None,
    )  # fmt: skip

    [message] = await eventually(lambda: parked(runtime))
    assert message["envelope"]["id"] == sent
    assert message["headers"]["x-attempts"] == 1 and message["headers"]["x-error-kind"] == "permanent"
    assert "550 5.1.1 <nobody@client.example>: Recipient unknown" in message["headers"]["x-error"]
    assert SMTP_PASSWORD not in message["headers"]["x-error"]
    assert starttls_server.received == []
    row = await eventually(
        lambda: runtime.pool.fetchrow("SELECT level, message FROM integration_logs WHERE key = 'message_parked'")
    )
    assert row["level"] == "error" and "550" in row["message"]


async def test_a_4xx_is_retried_with_the_same_message_id(
    runtime: Runtime, worker: Worker, starttls_server: MailServer
) -> None:
    smtp = await install_smtp(runtime, smtp_config(starttls_server))
    starttls_server.data_replies = ["451 4.3.0 Try again later"]

    sent = await command(
        runtime, "smtp", "send_email", {"to": "bob@client.example", "subject": "Hi", "text": "Hello"},
        integration_id=smtp.id, user_id=None,
    )  # fmt: skip

    await eventually(lambda: _delivered(starttls_server))
    [got] = starttls_server.received
    message = email.message_from_bytes(got.data, policy=email.policy.default)
    assert message["Message-ID"] == f"<{derived_id(sent, 'smtp-message')}@acme.example>"
    assert await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", sent))
    assert await parked(runtime) == []


async def _delivered(server: MailServer) -> bool:
    return bool(server.received)


async def test_a_partly_refused_message_is_sent_to_the_others_once(
    runtime: Runtime, worker: Worker, replies: Replies, starttls_server: MailServer
) -> None:
    smtp = await install_smtp(runtime, smtp_config(starttls_server))
    starttls_server.refuse_rcpt["gone@client.example"] = "550 5.1.1 No such user"

    sent = await command(
        runtime, "smtp", "send_email",
        {"to": ["bob@client.example", "gone@client.example"], "subject": "Hi", "text": "Hello"},
        integration_id=smtp.id, user_id=None, replies=replies,
    )  # fmt: skip

    output = (await replies.wait(sent))["output"]
    assert output["accepted"] == ["bob@client.example"]
    assert output["rejected"] == {"gone@client.example": "550 5.1.1 No such user"}
    assert [r.rcpt_tos for r in starttls_server.received] == [["bob@client.example"]]


async def test_install_is_refused_with_a_clear_reason(
    runtime: Runtime, starttls_server: MailServer, plain_server: MailServer
) -> None:
    with pytest.raises(InstallError) as wrong_password:
        await install_smtp(runtime, smtp_config(starttls_server, password="not-it"))
    with pytest.raises(InstallError) as closed_port:
        await install_smtp(runtime, smtp_config(starttls_server, port=free_port()))
    with pytest.raises(InstallError) as no_starttls:  # credentials never go out in the clear
        await install_smtp(runtime, smtp_config(plain_server))

    assert wrong_password.value.status == 422
    assert "refused the login (535" in wrong_password.value.message
    assert "not-it" not in wrong_password.value.message
    assert "could not connect to the SMTP server at 127.0.0.1:" in closed_port.value.message
    assert "STARTTLS" in no_starttls.value.message
    assert await runtime.pool.fetchval("SELECT count(*) FROM integrations WHERE type = 'smtp'") == 0


async def test_a_local_relay_without_tls_or_credentials(
    runtime: Runtime, worker: Worker, replies: Replies, plain_server: MailServer
) -> None:
    config = {"host": "127.0.0.1", "port": plain_server.port, "tls": "none", "fromEmail": "bot@acme.example"}
    smtp = await install_smtp(runtime, config)

    sent = await command(
        runtime, "smtp", "send_email", {"to": "bob@client.example", "subject": "Hi", "text": "Hello"},
        integration_id=smtp.id, user_id=None, replies=replies,
    )  # fmt: skip

    assert (await replies.wait(sent))["ok"] is True
    assert [r.rcpt_tos for r in plain_server.received] == [["bob@client.example"]]


async def test_a_password_in_the_clear_is_refused_by_the_config(runtime: Runtime) -> None:
    with pytest.raises(InstallError) as refused:
        await install_smtp(
            runtime, {"host": "mail.example", "port": 25, "tls": "none", "user": "u@x.example", "password": "p"}
        )

    assert refused.value.status == 400
    assert "in the clear" in str(refused.value.fields)
