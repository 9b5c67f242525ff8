-- Who each chat call was for and the tags its spend is attributed by
-- (RequestMetadata): '' and '{}' for calls without them and older rows.
-- Tags are a JSON object, read with json_each() to filter and to group.
ALTER TABLE request_log ADD COLUMN end_user_id TEXT NOT NULL DEFAULT '';
ALTER TABLE request_log ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';

-- ListCalls by end user, and GetStats per end user, within a window.
CREATE INDEX request_log_by_end_user ON request_log (organisation, end_user_id, create_time)
    WHERE end_user_id <> '';
