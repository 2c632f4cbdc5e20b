"""SMTP: send email through the team's own mail server (aiosmtplib, TLS enforced with credentials)."""

from integrations.smtp import send_email
from integrations.smtp.config import SmtpConfig, SmtpSettings
from worker.sdk import Action, Integration, Lifecycle, unordered

integration = Integration(
    type="smtp",
    name="SMTP",
    description="Send email through the team's own SMTP server.",
    config=SmtpConfig,
    settings=SmtpSettings,
    actions=[
        Action(
            "send_email",
            "Send an email (to, cc, bcc, subject, text and/or HTML, reply-to).",
            send_email.SendEmailInput,
            send_email.SendEmailOutput,
            send_email.run,
            key=unordered,  # each email on its own
        )
    ],
    lifecycle=Lifecycle(validate=send_email.validate),
)
