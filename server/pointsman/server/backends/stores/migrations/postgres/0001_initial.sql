-- The first schema. Every organisation-owned table leads its key with the
-- organisation, so every query is an index range within one tenant.

CREATE TABLE rules (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    organisation text NOT NULL,
    id text NOT NULL,
    kind text NOT NULL,
    match_type text NOT NULL,
    pattern text NOT NULL,
    keywords text[] NOT NULL,
    description text NOT NULL,
    enabled boolean NOT NULL,
    scope text NOT NULL,
    create_time timestamptz NOT NULL,
    update_time timestamptz NOT NULL,
    PRIMARY KEY (organisation, id)
);

CREATE INDEX rules_in_creation_order ON rules (organisation, seq);

-- Bumped in the same transaction as every rule change.
CREATE TABLE rule_versions (
    organisation text PRIMARY KEY,
    version bigint NOT NULL
);

CREATE TABLE decisions (
    organisation text NOT NULL,
    id text NOT NULL,  -- sorts by time
    create_time timestamptz NOT NULL,
    principal text NOT NULL,
    direction text NOT NULL,
    action text NOT NULL,
    categories text[] NOT NULL,  -- one entry per finding category
    findings jsonb NOT NULL,
    content_sha256 text NOT NULL,
    request_id text NOT NULL,
    details jsonb NOT NULL,  -- decision fields without a column
    PRIMARY KEY (organisation, id)
);

CREATE TABLE request_log (
    organisation text NOT NULL,
    id text NOT NULL,  -- sorts by time
    create_time timestamptz NOT NULL,
    request_id text NOT NULL,
    principal text NOT NULL,
    model text NOT NULL,
    deployment text NOT NULL,
    status_code text NOT NULL,
    input_tokens integer NOT NULL,
    output_tokens integer NOT NULL,
    latency_ms double precision NOT NULL,
    time_to_first_token_ms double precision,
    cache_hit boolean NOT NULL,
    PRIMARY KEY (organisation, id)
);

CREATE TABLE users (
    organisation text NOT NULL,
    id text NOT NULL,
    email text NOT NULL,  -- lower case
    display_name text NOT NULL,
    role text NOT NULL CHECK (role IN ('admin', 'developer', 'viewer')),
    create_time timestamptz NOT NULL,
    PRIMARY KEY (organisation, id),
    UNIQUE (organisation, email)
);

CREATE TABLE api_keys (
    id text PRIMARY KEY,  -- the key's non-secret part, unique across organisations
    organisation text NOT NULL,
    user_id text NOT NULL,
    display_name text NOT NULL,
    key_sha256 text NOT NULL,  -- the key itself is never stored
    create_time timestamptz NOT NULL,
    expire_time timestamptz,
    revoke_time timestamptz,
    last_used_time timestamptz,
    FOREIGN KEY (organisation, user_id) REFERENCES users (organisation, id) ON DELETE CASCADE
);

CREATE INDEX api_keys_by_user ON api_keys (organisation, user_id);

CREATE TABLE instances (
    organisation text NOT NULL,
    instance_id text NOT NULL,
    address text NOT NULL,
    version text NOT NULL,
    models text[] NOT NULL,
    labels jsonb NOT NULL,
    lease_seconds double precision NOT NULL,
    register_time timestamptz NOT NULL,
    lease_expire_time timestamptz NOT NULL,
    PRIMARY KEY (organisation, instance_id)
);

CREATE INDEX instances_by_lease_expiry ON instances (lease_expire_time);
