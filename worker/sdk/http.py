"""Calling provider APIs: httpx with tenacity retries on transient failures, and file downloads.

A transient failure (network error, timeout, 5xx, 429 and whatever the
integration's classifier says) is retried here a few times with short,
jittered waits, honouring Retry-After; when the provider asks for a longer
wait than `max_inline_wait`, or the attempts run out, a `TransientError`
carrying the wait goes up, and the worker's delayed retry queue takes over
without holding the message. Permanent failures raise `ProviderError`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Container
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential
from tenacity.wait import wait_base

from worker.core.redact import redact
from worker.sdk.errors import Failure, PermanentError, ProviderError, TransientError, classify_response

Classifier = Callable[[httpx.Response], Failure | None]


class _Again(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


class _wait_retry_after(wait_base):
    """Wait what the provider asked (Retry-After), else a jittered exponential backoff."""

    def __init__(self) -> None:
        self._fallback = wait_random_exponential(multiplier=0.2, max=2)

    def __call__(self, retry_state: Any) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Again) and exc.failure.retry_after is not None:
            return float(exc.failure.retry_after)
        return float(self._fallback(retry_state))


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


async def call(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    classify: Classifier = classify_response,
    ok_statuses: Container[int] = (),
    attempts: int = 3,
    max_inline_wait: float = 5.0,
    **kwargs: Any,
) -> httpx.Response:
    """One provider call, retried on transient failures; returns a successful response
    (or one whose status is in `ok_statuses`), raises ProviderError or TransientError."""

    async def once() -> httpx.Response:
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise _Again(Failure("transient", f"{method} {_safe_url(url)}: {type(exc).__name__}")) from exc
        if response.status_code in ok_statuses:
            return response
        failure = classify(response)
        if failure is None:
            return response
        if failure.kind == "permanent":
            raise ProviderError(failure.reason, status=response.status_code, body=_body(response))
        if failure.retry_after is not None and failure.retry_after > max_inline_wait:
            raise TransientError(failure.reason, retry_after=failure.retry_after)
        raise _Again(failure)

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_Again),
            stop=stop_after_attempt(attempts),
            wait=_wait_retry_after(),
            reraise=True,
        ):
            with attempt:
                return await once()
    except _Again as exc:
        raise TransientError(exc.failure.reason, retry_after=exc.failure.retry_after) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _safe_url(url: str) -> str:
    return redact(str(httpx.URL(url).copy_with(query=None)))


@dataclass(frozen=True)
class Download:
    """A file fetched from the provider."""

    content: bytes
    content_type: str | None = None


class AttachmentTooLarge(PermanentError):
    pass


MAX_REDIRECTS = 5


def host_allowed(host: str, allowed: Collection[str]) -> bool:
    """`host` is one of `allowed`, where `*.example.com` stands for any name under example.com."""
    host = host.lower().rstrip(".")
    for given in allowed:
        pattern = given.lower().strip()
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False


async def download(
    http: httpx.AsyncClient,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    max_bytes: int,
    redirect_hosts: Collection[str] = (),
) -> Download:
    """GET a provider file, refusing more than `max_bytes`. Redirects are followed (at most
    MAX_REDIRECTS) only to the URL's own host or to `redirect_hosts` (a provider's storage), each
    hop checked again, so a provider host redirecting to an internal address is not followed;
    `headers` (credentials) go to the URL's own origin only, never to a host it redirects to."""
    origin = httpx.URL(url)
    current = origin
    try:
        for _ in range(MAX_REDIRECTS + 1):
            same_origin = (current.scheme, current.host, current.port) == (origin.scheme, origin.host, origin.port)
            async with http.stream("GET", current, headers=headers if same_origin else None) as response:
                if response.is_redirect:
                    current = _next_hop(current, response, origin.host, redirect_hosts)
                    continue
                return await _read(response, max_bytes)
    except httpx.TransportError as exc:
        raise TransientError(f"fetching the file failed: {type(exc).__name__}") from None
    raise PermanentError(f"the file is behind more than {MAX_REDIRECTS} redirects")


def _next_hop(
    current: httpx.URL, response: httpx.Response, own_host: str, redirect_hosts: Collection[str]
) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise PermanentError("the provider redirected without a Location")
    target = current.join(location)
    if target.scheme not in ("https", "http") or not (
        target.host == own_host or host_allowed(target.host, redirect_hosts)
    ):
        raise PermanentError(f"the provider redirected to a host that is not allowed ({target.host})")
    return target


async def _read(response: httpx.Response, max_bytes: int) -> Download:
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
