-- volley PostgreSQL schema, version 1. Documented in README.md ("The database").
-- The same tables and columns as the SQLite schema, plus what several
-- workers need to share a job: workers (liveness), hosts (host leases and
-- open task counts) and per-task lease columns (owner, claim counter).
-- Times are Unix epoch milliseconds; durations are milliseconds.

CREATE TABLE jobs (
    id                bigserial PRIMARY KEY,
    name              text    NOT NULL UNIQUE,
    input             text    NOT NULL,
    created_at_ms     bigint  NOT NULL,
    ingested_lines    bigint  NOT NULL DEFAULT 0,
    ingest_complete   boolean NOT NULL DEFAULT false,
    input_fingerprint text,
    input_stamp       text,
    options           text                        -- the job's fetch options (JSON, FetchSpec's serde form)
);

-- One row per worker process (`volley fetch` or `volley work`). A worker is
-- live while lease_expires_at is in the future; it renews it by heartbeat.
-- Once it has passed, the worker's host and task leases are void, and its
-- heartbeat cannot revive them (it must register again).
CREATE TABLE workers (
    id               bigserial   PRIMARY KEY,
    name             text        NOT NULL,        -- hostname:pid
    started_at       timestamptz NOT NULL DEFAULT now(),
    heartbeat_at     timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz NOT NULL,
    job_id           bigint,                      -- the job it works on now
    tasks_held       integer     NOT NULL DEFAULT 0,
    hosts_held       integer     NOT NULL DEFAULT 0,
    recorded         bigint      NOT NULL DEFAULT 0, -- outcomes it committed
    fenced           bigint      NOT NULL DEFAULT 0, -- late outcomes it dropped (lease lost)
    requests_per_s   real        NOT NULL DEFAULT 0
);

-- Host affinity: a host's tasks are fetched only by the worker holding the
-- host, so per-host limits hold for the whole cluster. `open` counts the
-- host's tasks without an outcome; hosts with open = 0 are never claimed.
CREATE TABLE hosts (
    job_id bigint NOT NULL REFERENCES jobs (id),
    host   text   NOT NULL,
    open   bigint NOT NULL DEFAULT 0,
    owner  bigint,                                -- workers.id holding the host lease
    PRIMARY KEY (job_id, host)
);
CREATE INDEX hosts_open ON hosts (job_id) WHERE open > 0;

CREATE TABLE tasks (
    id          bigserial PRIMARY KEY,
    job_id      bigint  NOT NULL REFERENCES jobs (id),
    line        bigint,
    url         text    NOT NULL,
    host        text,
    state       text    NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'done', 'failed')),
    -- The lease: a claim sets these two and nothing indexed, so it is a
    -- HOT update. A 'pending' task with an owner is leased.
    lease_owner bigint,                           -- workers.id
    claim       bigint  NOT NULL DEFAULT 0,       -- fencing token: +1 per claim
    parent_id   bigint REFERENCES tasks (id),
    page        integer NOT NULL DEFAULT 1,
    meta        text,
    UNIQUE (job_id, line)
);
CREATE INDEX tasks_by_url ON tasks (job_id, url) WHERE host IS NOT NULL;
-- The frontier: pending tasks by host, oldest first. Shrinks as tasks end,
-- so a claim costs the same at the end of a job as at its start.
CREATE INDEX tasks_pending ON tasks (job_id, host, id) WHERE state = 'pending';

CREATE TABLE outcomes (
    task_id        bigint PRIMARY KEY REFERENCES tasks (id),
    job_id         bigint NOT NULL REFERENCES jobs (id),
    class          text   NOT NULL,
    status         integer,
    http_version   text,
    message        text,
    attempts       integer NOT NULL,
    bytes          bigint,
    wire_bytes     bigint,
    elapsed_ms     bigint,
    ttfb_ms        bigint,
    final_url      text,
    content_type   text,
    body_sha256    text,
    body_path      text,
    headers        text,
    extracted      text,
    duplicate_of   bigint REFERENCES tasks (id),
    started_at_ms  bigint,
    finished_at_ms bigint NOT NULL
);

CREATE TABLE items (
    task_id bigint  NOT NULL REFERENCES tasks (id),
    idx     integer NOT NULL,
    item    text    NOT NULL,
    PRIMARY KEY (task_id, idx)
);

CREATE TABLE attempts (
    task_id        bigint  NOT NULL REFERENCES tasks (id),
    attempt        integer NOT NULL,
    class          text    NOT NULL,
    status         integer,
    message        text,
    started_at_ms  bigint  NOT NULL,
    elapsed_ms     bigint  NOT NULL,
    retry_delay_ms bigint,
    PRIMARY KEY (task_id, attempt)
);
