-- The user a call was made for (the x-user-id header; NULL: for the team): a user's tool token
-- reads that user's answers only, and the same idempotency key of two users is two calls.
ALTER TABLE action_results ADD COLUMN user_id text;
