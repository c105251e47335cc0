-- volley schema, version 1. Documented in README.md ("The database").
-- Times are Unix epoch milliseconds; durations are milliseconds.

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    input           TEXT    NOT NULL,            -- what it reads: canonical paths, '-' (stdin) or 'template:…' 
    created_at_ms   INTEGER NOT NULL,
    ingested_lines  INTEGER NOT NULL DEFAULT 0,  -- ingest cursor: last input line committed
    ingest_complete INTEGER NOT NULL DEFAULT 0   -- 1 once every input line is a task
);

CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs (id),
    line        INTEGER,                         -- input ordinal (line number across inputs); NULL for discovered pages
    url         TEXT    NOT NULL,                -- normalised URL; the raw line for invalid input
    host        TEXT,                            -- NULL for invalid input
    state       TEXT    NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'leased', 'done', 'failed')),
    lease_owner TEXT,                            -- the run holding the lease
    parent_id   INTEGER REFERENCES tasks (id),   -- the page this one was found on (pagination)
    page        INTEGER NOT NULL DEFAULT 1,      -- position in its pagination chain, 1 for inputs
    meta        TEXT,                            -- the input row's other columns/fields, JSON object
    UNIQUE (job_id, line)
);
CREATE INDEX tasks_by_url ON tasks (job_id, url) WHERE host IS NOT NULL;
CREATE INDEX tasks_pending ON tasks (job_id, id) WHERE state = 'pending';

CREATE TABLE outcomes (
    task_id        INTEGER PRIMARY KEY REFERENCES tasks (id),  -- exactly one outcome per task
    job_id         INTEGER NOT NULL REFERENCES jobs (id),
    class          TEXT    NOT NULL,             -- 'ok', 'duplicate', or an error class
    status         INTEGER,                      -- final HTTP status
    http_version   TEXT,                         -- 'HTTP/1.1', 'HTTP/2.0', ...
    message        TEXT,                         -- failure detail
    attempts       INTEGER NOT NULL,             -- requests made, retries included
    bytes          INTEGER,                      -- decoded body bytes
    wire_bytes     INTEGER,                      -- body bytes on the wire (before decoding)
    elapsed_ms     INTEGER,                      -- final attempt, request to end of body
    ttfb_ms        INTEGER,                      -- final attempt, request to headers
    final_url      TEXT,                         -- after redirects
    content_type   TEXT,
    body_sha256    TEXT,                         -- hex SHA-256 of the decoded body
    body_path      TEXT,                         -- saved body (--save-bodies)
    headers        TEXT,                         -- final response headers, JSON object
    extracted      TEXT,                         -- --extract fields, JSON object
    duplicate_of   INTEGER REFERENCES tasks (id),
    started_at_ms  INTEGER,
    finished_at_ms INTEGER NOT NULL
);
-- No index on (job_id, class): it cost a B-tree insert per outcome for the
-- sake of `volley status`, which scans a job's outcomes quickly enough.

-- Elements of the JSON array at --items, one row each, with their page.
CREATE TABLE items (
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    idx     INTEGER NOT NULL,                    -- 0-based position in the page's array
    item    TEXT    NOT NULL,                    -- the element as JSON
    PRIMARY KEY (task_id, idx)
) WITHOUT ROWID;

-- Every attempt of a task that was retried (a task fetched once has none:
-- its outcome says it all), committed with the task's outcome.
CREATE TABLE attempts (
    task_id        INTEGER NOT NULL REFERENCES tasks (id),
    attempt        INTEGER NOT NULL,             -- 1-based
    class          TEXT    NOT NULL,
    status         INTEGER,
    message        TEXT,
    started_at_ms  INTEGER NOT NULL,
    elapsed_ms     INTEGER NOT NULL,
    retry_delay_ms INTEGER,                      -- wait before the next attempt; NULL for the last
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;
