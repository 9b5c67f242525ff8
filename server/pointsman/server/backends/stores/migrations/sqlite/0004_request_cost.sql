-- What each chat call's answer cost at its deployment's price (routes file),
-- in US dollars; for a cache hit, what it would have cost. 0 where no price
-- was given, and for rows written before this migration.
ALTER TABLE request_log ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;

-- GetStats reads the cost too: the covering index (0002) carries it, so
-- SQLite still answers from the index alone.
DROP INDEX request_log_by_time;

CREATE INDEX request_log_by_time ON request_log (
    organisation, create_time, deployment, cache_hit, status_code,
    latency_ms, time_to_first_token_ms, input_tokens, output_tokens, cost_usd
);
