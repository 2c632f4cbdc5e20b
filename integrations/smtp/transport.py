"""Talking to the SMTP server with aiosmtplib, and what its failures mean.

TLS: implicit (`use_tls`) or a forced STARTTLS (`start_tls=True`: a server, or a man in the
middle, that hides STARTTLS makes the connection fail instead of sending the password in the
clear); `none` only for relays without credentials. Certificates are verified (extra CAs:
`IW_SMTP_CA_FILE`).

Failures (RFC 5321): 4xx replies, connection errors and timeouts are transient; 5xx replies
are permanent, with the server's words in the reason.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib

from integrations.smtp.config import SmtpConfig, SmtpSettings
from worker.sdk import PermanentError, TransientError, redact


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """One per CA file for the process: building one loads the system's CA store."""
    return _tls_context(str(settings.ca_file) if settings.ca_file is not None else None)


@functools.cache
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


def client(config: SmtpConfig, settings: SmtpSettings) -> aiosmtplib.SMTP:
    mode = config.tls_mode
    return aiosmtplib.SMTP(
        hostname=config.host,
        port=config.port,
        username=config.user,
        password=config.password.get_secret_value() if config.password is not None else None,
        use_tls=mode == "implicit",
        start_tls=mode == "starttls",
        tls_context=tls_context(settings) if mode != "none" else None,
        timeout=settings.timeout,
    )


def _reply(code: int, message: str) -> str:
    return redact(f"{code} {' '.join(message.split())}")[:500]


def failure(exc: Exception, where: str) -> TransientError | PermanentError:
    """The worker's view of an SMTP failure."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        refused = "; ".join(f"{r.recipient}: {_reply(r.code, r.message)}" for r in exc.recipients)
        if codes and all(code >= 500 for code in codes):
            return PermanentError(f"{where}: every recipient was refused ({refused})")
        return TransientError(f"{where}: recipients refused for now ({refused})")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = _reply(exc.code, exc.message)
        if 400 <= exc.code < 500:
            return TransientError(f"{where}: the server answered {reply}")
        if exc.code >= 500:
            return PermanentError(f"{where}: the server answered {reply}")
        return TransientError(f"{where}: unexpected reply {reply}")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentError(f"{where}: {redact(str(exc))}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(f"{where}: the server's TLS certificate is not trusted ({exc.verify_message})")
    if isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError):
        return TransientError(f"{where}: {type(exc).__name__}: {redact(str(exc))}")
    raise exc


async def send(
    config: SmtpConfig, settings: SmtpSettings, message: EmailMessage, recipients: Sequence[str]
) -> dict[str, str]:
    """Send; returns the recipients the server refused while accepting the others."""
    smtp = client(config, settings)
    where = f"SMTP {config.host}:{config.port}"
    try:
        async with smtp:
            refused, _ = await smtp.send_message(message, sender=config.sender, recipients=list(recipients))
    except Exception as exc:
        raise failure(exc, where) from None
    return {address: _reply(reply.code, reply.message) for address, reply in refused.items()}


async def check_login(config: SmtpConfig, settings: SmtpSettings) -> None:
    """Connect, upgrade to TLS as configured, log in, quit (the install's `validate`)."""
    smtp = client(config, settings)
    async with smtp:
        await smtp.noop()
