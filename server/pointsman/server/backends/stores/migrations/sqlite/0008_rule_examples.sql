-- Topic rules by meaning: example phrases (a JSON array) and the least cosine
-- similarity to one of them; none and 0 for older rules (keywords only).
ALTER TABLE rules ADD COLUMN examples TEXT NOT NULL DEFAULT '[]';
ALTER TABLE rules ADD COLUMN threshold REAL NOT NULL DEFAULT 0;
