-- Tool calls made by agents (AgentService.ListToolCalls): who, which agent
-- and tool, the arguments' digest (never the arguments), how long, how it ended.
CREATE TABLE tool_calls (
    organisation TEXT NOT NULL,
    id TEXT NOT NULL,  -- sorts by time
    create_time INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    agent TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments_sha256 TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (organisation, id)
) STRICT, WITHOUT ROWID;

CREATE INDEX tool_calls_by_create_time ON tool_calls (create_time);
