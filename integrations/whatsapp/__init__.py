"""WhatsApp through Twilio: messages to the team's WhatsApp number reach the platform's agent (with an
account-link flow for numbers not linked yet); answers go back through Twilio's Messages API."""

from integrations.whatsapp import commands, files, verify
from integrations.whatsapp.config import WhatsappConfig, WhatsappSettings
from integrations.whatsapp.messages import on_message
from worker.sdk import Action, Handler, Integration

integration = Integration(
    type="whatsapp",
    name="WhatsApp",
    description="Talk to the platform's agent over WhatsApp (through Twilio), with media.",
    config=WhatsappConfig,
    settings=WhatsappSettings,
    webhook=verify.receive,
    handlers=[Handler("webhook", "message", on_message)],
    actions=[
        Action(
            "send_message",
            "Send a WhatsApp message (free text within 24 hours of the person's last message, else a template).",
            commands.SendMessageInput,
            commands.SendMessageOutput,
            commands.send_message,
        )
    ],
    attachments=files.fetch,
    external_team_id=lambda config: config.number,
)
