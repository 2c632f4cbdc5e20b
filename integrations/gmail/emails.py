"""Actions as the acting user (envelope header `x-user-id`): list recent emails, create a
draft, send a draft. Drafts are proper RFC 5322 messages (email.message.EmailMessage) with a
Message-ID derived from the command id, so a retried `create_draft` finds its first draft
instead of making a second one."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, model_validator

from integrations.email_common.compose import EmailAddress, compose, domain_of
from integrations.gmail.client import gmail
from integrations.gmail.mime import decode_message
from integrations.gmail.sync import mail_url
from integrations.google_common.links import acting_link
from worker.sdk import Context, ProviderError, derived_id

LIST_BODY_CHARS = 2000


class ListEmailsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(default=None, max_length=1000, description="Gmail search, e.g. `from:bob is:unread`.")
    max_results: int = Field(default=10, ge=1, le=50)
    page_token: str | None = None


class EmailSummary(BaseModel):
    id: str
    thread_id: str | None
    subject: str
    sender: str = Field(description="`Name <address>`.")
    to: list[str]
    date: str | None
    snippet: str
    body: str = Field(description=f"The text, cut at {LIST_BODY_CHARS} characters.")
    labels: list[str]
    url: str


class ListEmailsOutput(BaseModel):
    emails: list[EmailSummary]
    next_page_token: str | None = None


class CreateDraftInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: list[EmailAddress] = Field(min_length=1, max_length=100)
    cc: list[EmailAddress] = Field(default_factory=list, max_length=100)
    bcc: list[EmailAddress] = Field(default_factory=list, max_length=100)
    subject: str = Field(max_length=998)
    body: str | None = Field(default=None, description="Plain text.")
    html: str | None = Field(default=None, description="HTML (with `body`, sent as alternatives).")
    reply_to: EmailAddress | None = None

    @model_validator(mode="after")
    def _some_body(self) -> CreateDraftInput:
        if not self.body and not self.html:
            raise ValueError("a draft needs `body` or `html`")
        return self


class DraftOutput(BaseModel):
    draft_id: str
    message_id: str
    url: str


class SendDraftInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    draft_id: str = Field(min_length=1, max_length=200)


class SendDraftOutput(BaseModel):
    message_id: str | None = Field(description="The sent message; None when a retried send found it already sent.")
    thread_id: str | None = None
    already_sent: bool = False


async def list_emails(ctx: Context, request: ListEmailsInput) -> ListEmailsOutput:
    link = await acting_link(ctx)
    params: dict[str, Any] = {"maxResults": request.max_results}
    if request.query:
        params["q"] = request.query
    if request.page_token:
        params["pageToken"] = request.page_token
    listing = (await gmail(ctx, link.id, "GET", "/messages", params=params)).json()
    slots = asyncio.Semaphore(8)

    async def one(message_id: str) -> dict[str, Any] | None:
        async with slots:
            response = await gmail(
                ctx, link.id, "GET", f"/messages/{quote(message_id)}", params={"format": "full"}, ok_statuses=(404,)
            )
        return None if response.status_code == 404 else dict(response.json())

    fetched = await asyncio.gather(*(one(str(m["id"])) for m in listing.get("messages") or []))
    emails = []
    for message in fetched:
        if message is None:
            continue
        email = decode_message(message)
        emails.append(
            EmailSummary(
                id=email.id,
                thread_id=email.thread_id,
                subject=email.subject,
                sender=email.sender,
                to=email.to,
                date=email.date,
                snippet=email.snippet,
                body=email.text[:LIST_BODY_CHARS],
                labels=email.label_ids,
                url=mail_url(link.external_user_id, email.id),
            )
        )
    return ListEmailsOutput(emails=emails, next_page_token=listing.get("nextPageToken"))


def _draft_url(mailbox: str, message_id: str) -> str:
    return f"https://mail.google.com/mail/u/?authuser={quote(mailbox)}#drafts?compose={quote(message_id)}"


async def create_draft(ctx: Context, request: CreateDraftInput) -> DraftOutput:
    link = await acting_link(ctx)
    rfc822_id = f"<{derived_id(ctx.envelope.id, 'gmail-draft')}@{domain_of(link.external_user_id)}>"
    if ctx.is_repeat:  # a previous run may have created it before failing
        found = (await gmail(ctx, link.id, "GET", "/drafts", params={"q": f"rfc822msgid:{rfc822_id}"})).json()
        for draft in found.get("drafts") or []:
            message_id = str((draft.get("message") or {}).get("id", ""))
            return DraftOutput(
                draft_id=str(draft["id"]), message_id=message_id, url=_draft_url(link.external_user_id, message_id)
            )
    message = compose(
        sender=link.external_user_id,
        to=request.to,
        cc=request.cc,
        reply_to=request.reply_to,
        subject=request.subject,
        text=request.body,
        html=request.html,
        message_id=rfc822_id,
    )
    if request.bcc:
        message["Bcc"] = ", ".join(request.bcc)  # a draft keeps Bcc; Gmail strips it when sending
    raw = base64.urlsafe_b64encode(message.as_bytes()).decode().rstrip("=")
    body = (await gmail(ctx, link.id, "POST", "/drafts", json={"message": {"raw": raw}})).json()
    message_id = str((body.get("message") or {}).get("id", ""))
    ctx.record("info", "draft_created", f"draft created in {link.external_user_id}", user_link_id=link.id)
    return DraftOutput(
        draft_id=str(body["id"]), message_id=message_id, url=_draft_url(link.external_user_id, message_id)
    )


async def send_draft(ctx: Context, request: SendDraftInput) -> SendDraftOutput:
    link = await acting_link(ctx)
    try:
        body = (await gmail(ctx, link.id, "POST", "/drafts/send", json={"id": request.draft_id})).json()
    except ProviderError as exc:
        if exc.status == 404 and ctx.is_repeat:  # sent by the run that failed afterwards
            return SendDraftOutput(message_id=None, already_sent=True)
        raise
    ctx.record("info", "draft_sent", f"draft sent from {link.external_user_id}", user_link_id=link.id)
    return SendDraftOutput(message_id=str(body.get("id")), thread_id=body.get("threadId"))
