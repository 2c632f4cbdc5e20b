"""`GET /attachments/{token}`: a file that came with a message, fetched from the provider with the
integration's own credentials when the platform asks for it (worker/sdk/attachments.py says how
the links are made).

The file is the provider's content, not a page of this service: every answer is a download
(`Content-Disposition: attachment` with a safe file name), never sniffed into another type
(`X-Content-Type-Options: nosniff`), and sandboxed should a browser render it anyway
(`Content-Security-Policy: sandbox`), so a file served as HTML runs no script on this origin."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from worker.core import signing
from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.platform.http import error
from worker.runtime.runtime import Runtime
from worker.sdk.attachments import ATTACHMENT_PURPOSE
from worker.sdk.errors import PermanentError, ProviderError, TransientError
from worker.sdk.http import AttachmentTooLarge


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
            file = await integration.attachments(
                runtime.receiver_context(record.type, record), record, str(claims["ref"])
            )
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
        headers = {
            "Cache-Control": "private, max-age=300",
            "Content-Disposition": _disposition(str(claims.get("n") or "attachment")),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
        }
        return Response(file.content, media_type=content_type, headers=headers)

    return [Route("/attachments/{token}", fetch, methods=["GET"])]


def safe_file_name(name: str) -> str:
    """A file name without paths, control characters or quotes, at most 200 characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c for c in base if c.isprintable() and c not in '"<>:|?*').strip(" .")
    return cleaned[:200] or "attachment"


def _disposition(name: str) -> str:
    safe = safe_file_name(name)
    fallback = safe.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(safe, safe='')}"
