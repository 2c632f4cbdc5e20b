"""Decoding Gmail's `format=full` messages: nested multiparts, attachments left out, charsets,
encoded words, HTML turned into text, both base64 alphabets."""

from __future__ import annotations

import base64
import email.policy
from email.message import EmailMessage

from integrations.gmail.mime import b64url_decode, decode_message, html_to_text
from tests.fakes.google import StoredMessage


def gmail_json(message: EmailMessage, labels: tuple[str, ...] = ("INBOX",)) -> dict[str, object]:
    return StoredMessage("m1", "t1", message.as_bytes(policy=email.policy.SMTP), list(labels), 1).full()


def test_a_mixed_message_gives_its_text_and_names_its_attachments() -> None:
    message = EmailMessage()
    message["From"] = '"Doe, Jane" <Jane@Example.com>'
    message["To"] = "a@x.example, B <b@x.example>"
    message["Cc"] = "c@x.example"
    message["Subject"] = "Quarterly report für Q3"
    message.set_content("Plain version\nline two")
    message.add_alternative("<p>HTML version</p>", subtype="html")
    message.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="report.pdf")

    decoded = decode_message(gmail_json(message))

    assert decoded.text == "Plain version\nline two"
    assert decoded.html is not None and "HTML version" in decoded.html
    assert decoded.attachments == ["report.pdf"]
    assert decoded.from_name == "Doe, Jane" and decoded.from_address == "jane@example.com"
    assert decoded.to == ["a@x.example", "b@x.example"] and decoded.cc == ["c@x.example"]
    assert decoded.subject == "Quarterly report für Q3"


def test_an_unknown_charset_still_decodes() -> None:
    part = {
        "mimeType": "text/plain",
        "headers": [{"name": "Content-Type", "value": 'text/plain; charset="x-unknown-8"'}],
        "body": {"data": base64.urlsafe_b64encode("héllo".encode()).decode().rstrip("=")},
    }
    decoded = decode_message({"id": "m", "payload": {"mimeType": "multipart/mixed", "headers": [], "parts": [part]}})
    assert decoded.text == "héllo"


def test_html_to_text_keeps_structure_and_drops_scripts() -> None:
    html = "<div>Hi&nbsp;there</div><table><tr><td>a</td><td>b</td></tr></table><script>alert(1)</script>x<br>y"
    assert html_to_text(html) == "Hi there\n\na b\n\nx\ny"


def test_both_base64_alphabets_with_or_without_padding() -> None:
    raw = bytes(range(250, 256)) + b'{"emailAddress":"a@b.c"}'
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        assert b64url_decode(encoded) == raw
