-- An integration's config is a JSON object (the worker reads it as one). NOT VALID: rows written
-- before this migration are not checked, every row written from now on is.
ALTER TABLE integrations ADD CONSTRAINT integrations_config_is_an_object
    CHECK (jsonb_typeof(config) = 'object') NOT VALID;
