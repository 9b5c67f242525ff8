-- The first schema. Times are microseconds since the Unix epoch (UTC);
-- every organisation-owned table leads its key with the organisation.

CREATE TABLE rules (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    organisation TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    match_type TEXT NOT NULL,
    pattern TEXT NOT NULL,
    keywords TEXT NOT NULL,  -- JSON array
    description TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    scope TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    UNIQUE (organisation, id)
) STRICT;

-- Bumped in the same transaction as every rule change.
CREATE TABLE rule_versions (
    organisation TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) STRICT;

CREATE TABLE decisions (
    organisation TEXT NOT NULL,
    id TEXT NOT NULL,  -- sorts by time
    create_time INTEGER NOT NULL,
    principal TEXT NOT NULL,
    direction TEXT NOT NULL,
    action TEXT NOT NULL,
    categories TEXT NOT NULL,  -- ",pii,secret,": one entry per finding category
    findings TEXT NOT NULL,  -- JSON array of findings
    content_sha256 TEXT NOT NULL,
    request_id TEXT NOT NULL,
    details TEXT NOT NULL,  -- JSON object: decision fields without a column
    PRIMARY KEY (organisation, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE request_log (
    organisation TEXT NOT NULL,
    id TEXT NOT NULL,  -- sorts by time
    create_time INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    model TEXT NOT NULL,
    deployment TEXT NOT NULL,
    status_code TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    time_to_first_token_ms REAL,
    cache_hit INTEGER NOT NULL,
    PRIMARY KEY (organisation, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE users (
    organisation TEXT NOT NULL,
    id TEXT NOT NULL,
    email TEXT NOT NULL,  -- lower case
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'viewer')),
    create_time INTEGER NOT NULL,
    PRIMARY KEY (organisation, id),
    UNIQUE (organisation, email)
) STRICT;

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,  -- the key's non-secret part, unique across organisations
    organisation TEXT NOT NULL,
    user_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    key_sha256 TEXT NOT NULL,  -- the key itself is never stored
    create_time INTEGER NOT NULL,
    expire_time INTEGER,
    revoke_time INTEGER,
    last_used_time INTEGER,
    FOREIGN KEY (organisation, user_id) REFERENCES users (organisation, id) ON DELETE CASCADE
) STRICT;

CREATE INDEX api_keys_by_user ON api_keys (organisation, user_id);

CREATE TABLE instances (
    organisation TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    address TEXT NOT NULL,
    version TEXT NOT NULL,
    models TEXT NOT NULL,  -- JSON array
    labels TEXT NOT NULL,  -- JSON object
    lease_seconds REAL NOT NULL,
    register_time INTEGER NOT NULL,
    lease_expire_time INTEGER NOT NULL,
    PRIMARY KEY (organisation, instance_id)
) STRICT;

CREATE INDEX instances_by_lease_expiry ON instances (lease_expire_time);
