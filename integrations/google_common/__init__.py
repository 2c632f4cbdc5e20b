"""What Gmail and Google Calendar share: Google's OAuth (link flow, token refresh), API calls
with Google's error rules, user links, and the verification of Google-signed OIDC tokens."""
