"""WhatsApp through Twilio: messages to the team's WhatsApp number (or to a number many teams share,
routed by the sender's link) reach the platform's agent (with an account-link flow for numbers not
linked yet); answers go back through Twilio's Messages API."""

from integrations.whatsapp import commands, files, install, verify
from integrations.whatsapp.config import WhatsappConfig, WhatsappSettings
from integrations.whatsapp.messages import SHARED_REPLY, on_message, on_shared_message
from worker.sdk import Action, Handler, Integration, Lifecycle, payload_key

integration = Integration(
    type="whatsapp",
    name="WhatsApp",
    description="Talk to the platform's agent over WhatsApp (through Twilio), with media.",
    config=WhatsappConfig,
    settings=WhatsappSettings,
    webhook=verify.receive,
    handlers=[
        # a person's messages in order (to the team's number, or the shared one), and the answers to them
        Handler("webhook", "message", on_message, key=payload_key("From")),
        Handler("webhook", "shared_message", on_shared_message, requires_integration=False, key=payload_key("From")),
        Handler(
            "command",
            SHARED_REPLY,
            commands.send_from_shared_number,
            requires_integration=False,
            key=payload_key("to"),
        ),
    ],
    actions=[
        Action(
            "send_message",
            "Send a WhatsApp message (free text within 24 hours of the person's last message, else a template).",
            commands.SendMessageInput,
            commands.SendMessageOutput,
            commands.send_message,
            key=payload_key("to"),
        )
    ],
    lifecycle=Lifecycle(validate=install.validate),
    attachments=files.fetch,
    # a number of its own is the provider account (one team per number); none: the shared number
    external_team_id=lambda config: config.number,
)
