"""Files that came with messages, handed to the platform by reference.

A conversation integration describes each file as an `AttachmentSource` whose `ref` means
something to it alone (a provider URL, a file id). `reference()` turns it into the
`AttachmentRef` of a `message.received` event, whose `url` is
`IW_PUBLIC_URL/attachments/<token>`: the token is signed (purpose `attachment`) over the
integration and the ref and expires after IW_ATTACHMENT_URL_TTL. A GET on it makes the ingress
fetch the file from the provider with that integration's own credentials (its `attachments`
fetcher: Slack's bot token, Twilio's Basic auth, ...) and hand it back. Nothing is stored here,
no credential leaves the worker, and a forged, altered or expired link is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from schemas.events import AttachmentKind, AttachmentRef
from worker import signing
from worker.errors import PermanentError, TransientError, classify_response
from worker.http_answers import error
from worker.integration import Download
from worker.logging import get_logger
from worker.outbound import ProviderError
from worker.redact import redact
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.runtime import Runtime

ATTACHMENT_PURPOSE = "attachment"


class AttachmentTooLarge(PermanentError):
    pass


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


async def download(
    http: httpx.AsyncClient, url: str, *, headers: dict[str, str] | None = None, max_bytes: int
) -> Download:
    """GET a provider file, following redirects (httpx drops Authorization when a redirect leaves
    the origin), refusing more than `max_bytes`."""
    try:
        async with http.stream("GET", url, headers=headers, follow_redirects=True) as response:
            failure = classify_response(response)
            if failure is not None:
                if failure.kind == "transient":
                    raise TransientError(failure.reason, retry_after=failure.retry_after)
                raise ProviderError(failure.reason, status=response.status_code)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise AttachmentTooLarge(f"the file is larger than {max_bytes} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise AttachmentTooLarge(f"the file is larger than {max_bytes} bytes")
                chunks.append(chunk)
            return Download(b"".join(chunks), response.headers.get("content-type"))
    except httpx.TransportError as exc:
        raise TransientError(f"fetching the file failed: {type(exc).__name__}") from None


def attachment_routes(runtime: Runtime) -> list[BaseRoute]:
    log = get_logger(component="attachments")

    async def fetch(request: Request) -> Response:
        try:
            claims = signing.verify(
                runtime.settings.signing_key.get_secret_value(), ATTACHMENT_PURPOSE, request.path_params["token"]
            )
        except signing.InvalidSignedToken as exc:
            return error(410 if "expired" in str(exc) else 404, f"attachment link refused: {exc}")
        record = await runtime.integration(None, str(claims.get("iid")))
        integration = runtime.registry.get(record.type) if record is not None else None
        if record is None or integration is None or integration.attachments is None:
            return error(404, "the integration of this attachment is no longer installed")
        try:
            file = await integration.attachments(runtime.ingress_context(record.type), record, str(claims["ref"]))
        except AttachmentTooLarge as exc:
            return error(413, str(exc))
        except ProviderError as exc:
            log.warning("attachment fetch refused", integration_id=record.id, status=exc.status)
            return error(502, f"the provider refused the file (HTTP {exc.status})")
        except TransientError as exc:
            log.warning("attachment fetch failed", integration_id=record.id, error=redact(str(exc)))
            return error(503, "the provider could not be reached; try again")
        except PermanentError as exc:
            log.warning("attachment fetch refused", integration_id=record.id, error=redact(str(exc)))
            return error(502, redact(str(exc)))
        content_type = file.content_type or claims.get("mt") or "application/octet-stream"
        headers = {"Cache-Control": "private, max-age=300"}
        if claims.get("n"):
            headers["Content-Disposition"] = _disposition(str(claims["n"]))
        return Response(file.content, media_type=content_type, headers=headers)

    return [Route("/attachments/{token}", fetch, methods=["GET"])]


def _disposition(name: str) -> str:
    return f"attachment; filename*=UTF-8''{quote(name, safe='')}"
