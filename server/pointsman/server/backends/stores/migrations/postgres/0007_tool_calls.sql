-- Tool calls made by agents (AgentService.ListToolCalls): who, which agent
-- and tool, the arguments' digest (never the arguments), how long, how it ended.
CREATE TABLE tool_calls (
    organisation text NOT NULL,
    id text NOT NULL,  -- sorts by time
    create_time timestamptz NOT NULL,
    request_id text NOT NULL,
    principal text NOT NULL,
    agent text NOT NULL,
    tool text NOT NULL,
    arguments_sha256 text NOT NULL,
    duration_ms double precision NOT NULL,
    outcome text NOT NULL,
    PRIMARY KEY (organisation, id)
);

CREATE INDEX tool_calls_by_create_time ON tool_calls (create_time);
