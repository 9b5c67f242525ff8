-- What each chat call's answer cost at its deployment's price (routes file),
-- in US dollars; for a cache hit, what it would have cost. 0 where no price
-- was given, and for rows written before this migration.
ALTER TABLE request_log ADD COLUMN cost_usd float8 NOT NULL DEFAULT 0;
