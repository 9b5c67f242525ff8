-- Which cache hits the semantic cache answered (a question that means the
-- same as an earlier one); false for exact hits, misses and older rows.
ALTER TABLE request_log ADD COLUMN semantic_cache_hit boolean NOT NULL DEFAULT false;
