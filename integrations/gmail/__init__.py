"""Gmail: mail in (Pub/Sub push -> history.list -> messages.get -> filters, daily cap ->
`task.intake`), drafts out, as each linked user with their own OAuth tokens."""

from pathlib import Path

from integrations.gmail import emails, handle, push, watch
from integrations.gmail.config import SCOPES, GmailConfig, GmailLinkConfig, GmailSettings
from integrations.google_common.oauth import GoogleOAuthFlow
from worker.sdk import Action, Integration, Lifecycle, Schedule, UserLinks, payload_key, unordered

integration = Integration(
    type="gmail",
    name="Gmail",
    description="Emails become task intake (with filters and a daily cap); agents list emails and write drafts.",
    config=GmailConfig,
    settings=GmailSettings,
    webhook=push.receive,
    handlers=handle.HANDLERS,
    actions=[
        Action(
            "list_emails",
            "List the user's recent emails (Gmail search query optional).",
            emails.ListEmailsInput,
            emails.ListEmailsOutput,
            emails.list_emails,
            needs_user_link=True,
            key=unordered,
        ),
        Action(
            "create_draft",
            "Write an email draft in the user's Gmail.",
            emails.CreateDraftInput,
            emails.DraftOutput,
            emails.create_draft,
            needs_user_link=True,
            key=unordered,
        ),
        Action(
            "send_draft",
            "Send one of the user's Gmail drafts.",
            emails.SendDraftInput,
            emails.SendDraftOutput,
            emails.send_draft,
            needs_user_link=True,
            key=payload_key("draft_id"),
        ),
    ],
    lifecycle=Lifecycle(post_install=watch.post_install, pre_uninstall=watch.pre_uninstall),
    oauth=GoogleOAuthFlow(GmailSettings, SCOPES, after_link=watch.after_link),
    user_links=UserLinks(config=GmailLinkConfig, on_unlink=watch.on_unlink),
    schedules=[
        Schedule("renew_watches", GmailSettings().schedule_every_seconds, watch.renew_due),
        Schedule("poll_quiet_mailboxes", GmailSettings().schedule_every_seconds, watch.poll_quiet),
    ],
    migrations=Path(__file__).with_name("migrations"),
)
