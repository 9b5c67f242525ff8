-- GetStats reads one organisation's rows over a recent window: these indexes
-- find the window without walking the organisation's whole history.
-- Built inside the migration's transaction (not CONCURRENTLY), so writes to
-- these tables wait while they build; the write buffers hold them meanwhile.

CREATE INDEX request_log_by_time ON request_log (organisation, create_time);

CREATE INDEX decisions_by_time ON decisions (organisation, create_time);
