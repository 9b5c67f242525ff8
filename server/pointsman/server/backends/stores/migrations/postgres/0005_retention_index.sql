-- Retention (POINTSMAN_RETENTION_DAYS) deletes the oldest decisions and
-- request-log rows of every organisation, a batch at a time: these indexes
-- find them without scanning the tables.
CREATE INDEX decisions_by_create_time ON decisions (create_time);

CREATE INDEX request_log_by_create_time ON request_log (create_time);
