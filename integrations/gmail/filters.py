"""Which mail becomes intake (MIMRAI's filters, applied for real): promotions and social are
skipped, then the sender allow and deny lists (by address, not the whole `From` header), then
the subject and body patterns: the team's (the integration's config), then the mailbox owner's
own (their link's settings). Returns None to accept, else the reason it was skipped."""

from __future__ import annotations

import re

from integrations.gmail.config import GmailFilters
from integrations.gmail.mime import DecodedEmail

SKIPPED_CATEGORIES = {"CATEGORY_PROMOTIONS": "promotions", "CATEGORY_SOCIAL": "social"}
MAX_MATCHED_CHARS = 100_000  # patterns are searched in the first 100k characters of the body


def sender_matches(address: str, entries: list[str]) -> bool:
    address = address.lower()
    domain = "@" + address.rpartition("@")[2]
    return any(entry == address or (entry.startswith("@") and entry == domain) for entry in entries)


def skip_reason(email: DecodedEmail, filters: GmailFilters, user_filters: GmailFilters | None = None) -> str | None:
    """The team's filters, then the mailbox owner's own (their reasons start with `user_`)."""
    if "INBOX" not in email.label_ids:
        return "not_in_inbox"
    for label, reason in SKIPPED_CATEGORIES.items():
        if label in email.label_ids:
            return reason
    if not email.from_address:
        return "no_sender"
    team = _filtered(email, filters)
    if team is not None or user_filters is None:
        return team
    mine = _filtered(email, user_filters)
    return f"user_{mine}" if mine is not None else None


def _filtered(email: DecodedEmail, filters: GmailFilters) -> str | None:
    if filters.senders_deny and sender_matches(email.from_address, filters.senders_deny):
        return "sender_denied"
    if filters.senders_allow and not sender_matches(email.from_address, filters.senders_allow):
        return "sender_not_allowed"
    if filters.subject_pattern and not re.search(filters.subject_pattern, email.subject, re.IGNORECASE):
        return "subject_not_matching"
    if filters.body_pattern and not re.search(filters.body_pattern, email.text[:MAX_MATCHED_CHARS], re.IGNORECASE):
        return "body_not_matching"
    return None
