"""Telegram, as a bot: messages to the bot become task intake, agents send messages.

The example integration of docs/adding-an-integration.md: a webhook verified at the
ingress (verify.py), a handler (handle.py), an action (send.py), a config with a secret
(config.py), and every install hook (lifecycle.py).
"""

from integrations.telegram import handle, lifecycle, send, verify
from integrations.telegram.config import TelegramConfig, TelegramSettings
from worker.sdk import Action, Integration, Lifecycle, payload_key

integration = Integration(
    type="telegram",
    name="Telegram",
    description="Messages to the team's bot become task intake; agents send messages as the bot.",
    config=TelegramConfig,
    settings=TelegramSettings,
    webhook=verify.receive,
    handlers=handle.HANDLERS,
    actions=[
        Action(
            "send_message",
            "Send a text message to a Telegram chat as the team's bot.",
            send.SendMessageInput,
            send.SendMessageOutput,
            send.send_message,
            key=payload_key("chat_id"),  # a chat's messages in order
        ),
    ],
    lifecycle=Lifecycle(
        validate=lifecycle.validate,
        post_install=lifecycle.register_webhook,
        pre_uninstall=lifecycle.remove_webhook,
    ),
    # One team per bot: rows are unique per bot id.
    external_team_id=lambda config: config.bot_id,
)
