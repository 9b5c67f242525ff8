-- GetStats reads one organisation's rows over a recent window: these indexes
-- find the window without walking the organisation's whole history. They
-- also carry every column GetStats reads, so SQLite answers from the index
-- alone instead of looking each row up in the table (several times faster
-- when the window holds many rows).

CREATE INDEX request_log_by_time ON request_log (
    organisation, create_time, deployment, cache_hit, status_code,
    latency_ms, time_to_first_token_ms, input_tokens, output_tokens
);

CREATE INDEX decisions_by_time ON decisions (organisation, create_time, action, categories);
