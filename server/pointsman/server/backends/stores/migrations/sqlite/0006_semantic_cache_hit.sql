-- Which cache hits the semantic cache answered (a question that means the
-- same as an earlier one); 0 for exact hits, misses and older rows.
ALTER TABLE request_log ADD COLUMN semantic_cache_hit INTEGER NOT NULL DEFAULT 0;

-- GetStats reads it too: the covering index (0004) carries it, so SQLite
-- still answers from the index alone.
DROP INDEX request_log_by_time;

CREATE INDEX request_log_by_time ON request_log (
    organisation, create_time, deployment, cache_hit, status_code,
    latency_ms, time_to_first_token_ms, input_tokens, output_tokens, cost_usd, semantic_cache_hit
);
