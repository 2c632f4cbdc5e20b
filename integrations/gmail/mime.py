"""Decoding a Gmail API message (`format=full`): the MIME tree of parts whose `body.data` is
base64url (padding optional), headers that may carry RFC 2047 encoded words, text in the
part's declared charset, HTML turned into readable text when there is no plain-text part,
attachments left out (only their names are kept)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser
from typing import Any

_CHARSET = re.compile(r"""charset\s*=\s*"?([^";\s]+)"?""", re.IGNORECASE)
_PARAGRAPH_TAGS = frozenset(
    {"p", "div", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr", "section"}
)
_LINE_TAGS = frozenset({"br", "tr"})
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "noscript", "template"})


@dataclass
class DecodedEmail:
    id: str
    thread_id: str | None
    label_ids: list[str]
    snippet: str
    subject: str
    from_name: str | None
    from_address: str
    to: list[str]
    cc: list[str]
    date: str | None
    message_id_header: str | None
    text: str
    html: str | None = None
    attachments: list[str] = field(default_factory=list)

    @property
    def sender(self) -> str:
        return f"{self.from_name} <{self.from_address}>" if self.from_name else self.from_address


def b64url_decode(data: str) -> bytes:
    """base64url or standard base64, padding optional (Gmail omits it; Pub/Sub uses standard)."""
    cleaned = data.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=False)
    except (binascii.Error, ValueError):
        return b""


def decode_header_value(value: str | None) -> str:
    """A header as text: encoded words (`=?utf-8?b?...?=`) decoded, whitespace folded."""
    if not value:
        return ""
    try:
        decoded = str(make_header(decode_header(value)))
    except (UnicodeDecodeError, LookupError, ValueError, binascii.Error):
        decoded = value
    return " ".join(decoded.split())


def _headers(part: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for header in part.get("headers") or []:
        name = str(header.get("name", "")).lower()
        if name and name not in headers:
            headers[name] = str(header.get("value", ""))
    return headers


def _walk(part: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield part
    for child in part.get("parts") or []:
        yield from _walk(child)


def _is_attachment(part: dict[str, Any], headers: dict[str, str]) -> bool:
    body = part.get("body") or {}
    return (
        bool(part.get("filename"))
        or bool(body.get("attachmentId"))
        or (headers.get("content-disposition", "").lower().startswith("attachment"))
    )


def _text(part: dict[str, Any], headers: dict[str, str]) -> str:
    data = (part.get("body") or {}).get("data")
    if not data:
        return ""
    raw = b64url_decode(str(data))
    match = _CHARSET.search(headers.get("content-type", ""))
    charset = match.group(1) if match else "utf-8"
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skipping += 1
        elif tag in _PARAGRAPH_TAGS:
            self.parts.append("\n\n")
        elif tag in _LINE_TAGS:
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _PARAGRAPH_TAGS:
            self.parts.append("\n\n")
        elif tag == "tr":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def decode_message(message: dict[str, Any]) -> DecodedEmail:
    payload: dict[str, Any] = message.get("payload") or {}
    headers = _headers(payload)
    plain: list[str] = []
    html: list[str] = []
    attachments: list[str] = []
    for part in _walk(payload):
        part_headers = _headers(part)
        mime = str(part.get("mimeType", "")).lower()
        if _is_attachment(part, part_headers):
            if part.get("filename"):
                attachments.append(decode_header_value(str(part["filename"])))
            continue
        if mime == "text/plain":
            plain.append(_text(part, part_headers))
        elif mime == "text/html":
            html.append(_text(part, part_headers))
    html_body = "\n".join(h for h in html if h) or None
    text = "\n\n".join(t.strip() for t in plain if t.strip())
    if not text and html_body:
        text = html_to_text(html_body)
    name, address = parseaddr(headers.get("from", ""))
    return DecodedEmail(
        id=str(message.get("id", "")),
        thread_id=message.get("threadId"),
        label_ids=list(message.get("labelIds") or []),
        snippet=str(message.get("snippet") or ""),
        subject=decode_header_value(headers.get("subject")),
        from_name=decode_header_value(name) or None,
        from_address=address.lower(),
        to=[a.lower() for _, a in getaddresses([headers.get("to", "")]) if a],
        cc=[a.lower() for _, a in getaddresses([headers.get("cc", "")]) if a],
        date=headers.get("date"),
        message_id_header=headers.get("message-id"),
        text=text.replace("\r\n", "\n"),
        html=html_body,
        attachments=attachments,
    )
