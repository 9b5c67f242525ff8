-- Revoked JWTs (docs/auth.md): each token by its SHA-256 digest, kept until
-- the token would have expired anyway; the token itself is never stored.
CREATE TABLE revoked_tokens (
    token_sha256 text PRIMARY KEY,
    organisation text NOT NULL,
    expire_time timestamptz NOT NULL,
    revoke_time timestamptz NOT NULL
);

CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expire_time);
