"""Composing a proper RFC 5322 message (CRLF, MIME, encoded words for non-ASCII headers) with
`email.message.EmailMessage`, not by pasting strings together as MIMRAI did."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from typing import Annotated

from pydantic import AfterValidator

_ADDRESS = re.compile(
    r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


# CRLF line ends, and 7-bit bodies (quoted-printable or base64) that any server relays.
_POLICY = SMTP.clone(cte_type="7bit")


def _address(value: str) -> str:
    value = value.strip()
    if len(value) > 320 or not _ADDRESS.match(value):
        raise ValueError("not an email address")
    return value


EmailAddress = Annotated[str, AfterValidator(_address)]


def domain_of(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def compose(
    *,
    sender: str,
    sender_name: str | None = None,
    to: Sequence[str],
    cc: Sequence[str] = (),
    reply_to: str | None = None,
    subject: str,
    text: str | None,
    html: str | None,
    message_id: str,
    when: datetime | None = None,
) -> EmailMessage:
    """A message with `text` and/or `html` (both: multipart/alternative). Bcc recipients are
    never written into the message; pass them to the transport only."""
    if not text and not html:
        raise ValueError("a message needs a text or an HTML body")
    message = EmailMessage(policy=_POLICY)
    message["From"] = formataddr((sender_name, sender)) if sender_name else sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = format_datetime(when or datetime.now(UTC))
    message["Message-ID"] = message_id
    if text:
        message.set_content(text)
        if html:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html or "", subtype="html")
    return message
