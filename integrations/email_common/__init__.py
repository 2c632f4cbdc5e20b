"""What the mail integrations (Gmail drafts, SMTP) share: addresses and RFC 5322 composition."""
