-- Topic rules by meaning: example phrases and the least cosine similarity to
-- one of them; none and 0 for older rules (keywords only).
ALTER TABLE rules ADD COLUMN examples text[] NOT NULL DEFAULT '{}';
ALTER TABLE rules ADD COLUMN threshold double precision NOT NULL DEFAULT 0;
