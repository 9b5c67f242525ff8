-- Who each chat call was for and the tags its spend is attributed by
-- (RequestMetadata): '' and '{}' for calls without them and older rows.
ALTER TABLE request_log ADD COLUMN end_user_id text NOT NULL DEFAULT '';
ALTER TABLE request_log ADD COLUMN tags jsonb NOT NULL DEFAULT '{}';

-- ListCalls by end user, and GetStats per end user, within a window.
CREATE INDEX request_log_by_end_user ON request_log (organisation, end_user_id, create_time)
    WHERE end_user_id <> '';
-- ListCalls by tag (tags @> '{"team": "search"}').
CREATE INDEX request_log_by_tags ON request_log USING gin (tags jsonb_path_ops) WHERE tags <> '{}';
