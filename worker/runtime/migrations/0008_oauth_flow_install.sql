-- An OAuth flow the platform started as an install (`/oauth/{type}/start?install=true`): GitHub
-- then sends the browser to the App's install page even when the flow names a user (the
-- installer, linked once GitHub proved the installation is theirs).
ALTER TABLE oauth_flows ADD COLUMN install boolean NOT NULL DEFAULT false;
