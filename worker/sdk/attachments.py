"""Files that came with messages, handed to the platform by reference.

A conversation integration describes each file as an `AttachmentSource` whose `ref` means
something to it alone (a provider URL, a file id). `reference()` turns it into the
`AttachmentRef` of a `message.received` event, whose `url` is
`IW_PUBLIC_URL/attachments/<token>`: the token is signed (purpose `attachment`) over the
integration and the ref and expires after IW_ATTACHMENT_URL_TTL. A GET on it makes the service
fetch the file from the provider with that integration's own credentials (its `attachments`
fetcher) and hand it back. Nothing is stored, no credential leaves the worker, and a forged,
altered or expired link is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.events import AttachmentKind, AttachmentRef
from worker.core import signing
from worker.core.settings import Settings

ATTACHMENT_PURPOSE = "attachment"


@dataclass(frozen=True)
class AttachmentSource:
    """A file as the integration knows it; `ref` is handed back to its fetcher."""

    ref: str
    name: str | None = None
    mime_type: str | None = None
    size: int | None = None


def kind_of(mime_type: str | None) -> AttachmentKind:
    main = (mime_type or "").split("/", 1)[0].lower()
    if main in ("image", "audio", "video"):
        return main  # type: ignore[return-value]
    if mime_type and (main == "text" or mime_type.startswith("application/")):
        return "document"
    return "other"


def reference(settings: Settings, integration_id: str, source: AttachmentSource) -> AttachmentRef:
    token = signing.sign(
        settings.signing_key.get_secret_value(),
        ATTACHMENT_PURPOSE,
        {"iid": integration_id, "ref": source.ref, "mt": source.mime_type, "n": source.name},
        settings.attachment_url_ttl,
    )
    kind = kind_of(source.mime_type)
    return AttachmentRef(
        kind=kind,
        name=source.name,
        mime_type=source.mime_type,
        size=source.size,
        url=f"{settings.public_url.rstrip('/')}/attachments/{token}",
        expires_at=datetime.now(UTC) + timedelta(seconds=settings.attachment_url_ttl),
        transcribe=kind == "audio",
    )
