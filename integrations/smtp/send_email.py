"""Action `send_email` (`smtp.command.send_email`): one message to its recipients.

The Message-ID derives from the command id, so a retried command sends the same Message-ID
and a receiver (or a person) can recognise the copy; SMTP has no idempotency key, so a crash
between the server's 250 and our commit can still cause one such copy. Bcc recipients get the
message but appear in no header. Recipients the server refused while accepting others are
reported, not retried (a retry would send the others a second copy).
"""

from __future__ import annotations

import ssl
from typing import Any

import aiosmtplib
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from integrations.email_common.compose import EmailAddress, compose, domain_of
from integrations.smtp import transport
from integrations.smtp.config import SmtpConfig, SmtpSettings
from worker.sdk import Context, InstallRejected, derived_id, redact


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class SendEmailInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: list[EmailAddress] = Field(min_length=1, max_length=100, description="An address, or a list.")
    cc: list[EmailAddress] = Field(default_factory=list, max_length=100)
    bcc: list[EmailAddress] = Field(default_factory=list, max_length=100)
    subject: str = Field(max_length=998)
    text: str | None = Field(default=None, description="Plain-text body.")
    html: str | None = Field(default=None, description="HTML body (with `text`, sent as alternatives).")
    reply_to: EmailAddress | None = None

    _lists = field_validator("to", "cc", "bcc", mode="before")(_as_list)

    @model_validator(mode="after")
    def _some_body(self) -> SendEmailInput:
        if not self.text and not self.html:
            raise ValueError("an email needs `text` or `html`")
        return self


class SendEmailOutput(BaseModel):
    message_id: str = Field(description="The Message-ID header (stable across retries of the command).")
    accepted: list[str]
    rejected: dict[str, str] = Field(default_factory=dict, description="Refused recipients and the server's reply.")


async def run(ctx: Context, request: SendEmailInput) -> SendEmailOutput:
    config = ctx.config_as(SmtpConfig)
    settings = ctx.settings_as(SmtpSettings)
    message_id = f"<{derived_id(ctx.envelope.id, 'smtp-message')}@{domain_of(config.sender)}>"
    message = compose(
        sender=config.sender,
        sender_name=config.from_name,
        to=request.to,
        cc=request.cc,
        reply_to=request.reply_to,
        subject=request.subject,
        text=request.text,
        html=request.html,
        message_id=message_id,
    )
    recipients = list(dict.fromkeys(a.lower() for a in (*request.to, *request.cc, *request.bcc)))
    refused = await transport.send(config, settings, message, recipients)
    accepted = [a for a in recipients if a not in refused]
    ctx.record(
        "info" if not refused else "warning",
        "email_sent",
        f"email sent to {len(accepted)} recipient(s)" + (f", {len(refused)} refused" if refused else ""),
        details={"message_id": message_id, "refused": refused},
    )
    return SendEmailOutput(message_id=message_id, accepted=accepted, rejected=refused)


async def validate(ctx: Context) -> None:
    """Install: connect, upgrade to TLS as configured, and log in."""
    config = ctx.config_as(SmtpConfig)
    settings = ctx.settings_as(SmtpSettings)
    where = f"{config.host}:{config.port}"
    try:
        await transport.check_login(config, settings)
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise InstallRejected(
            f"the SMTP server at {where} refused the login ({exc.code} {redact(exc.message)})"
        ) from None
    except aiosmtplib.SMTPConnectError as exc:
        raise InstallRejected(f"could not connect to the SMTP server at {where}: {redact(str(exc))}") from None
    except ssl.SSLError as exc:
        raise InstallRejected(f"TLS with the SMTP server at {where} failed: {exc.reason or exc}") from None
    except (aiosmtplib.SMTPTimeoutError, TimeoutError):
        raise InstallRejected(f"the SMTP server at {where} did not answer in {settings.timeout:g}s") from None
    except aiosmtplib.SMTPException as exc:
        raise InstallRejected(f"the SMTP server at {where}: {redact(str(exc))}") from None
    except OSError as exc:
        raise InstallRejected(f"could not connect to the SMTP server at {where}: {exc.strerror or exc}") from None
