-- volley schema, version 9: a job's counts kept as they change, so that
-- its status does not scan its tasks and outcomes (store/counts.rs).
-- Every transaction that adds a task, moves one between states or records
-- an outcome adds its changes here before it commits. A counter is the sum
-- of its rows over the shards (one per PostgreSQL worker; SQLite uses 0).
CREATE TABLE job_counts (
    job_id   INTEGER NOT NULL REFERENCES jobs (id),
    shard    INTEGER NOT NULL,
    kind     TEXT    NOT NULL CHECK (kind IN ('tasks', 'outcomes')),
    name     TEXT    NOT NULL,   -- tasks: pending, leased, done, failed, pages; outcomes: the class
    n        INTEGER NOT NULL,
    first_ms INTEGER,            -- outcomes: the first and last finished_at_ms (Unix ms)
    last_ms  INTEGER,
    PRIMARY KEY (job_id, shard, kind, name)
) WITHOUT ROWID;

-- The counts of the jobs already in the database.
INSERT INTO job_counts (job_id, shard, kind, name, n)
    SELECT job_id, 0, 'tasks', state, count(*) FROM tasks GROUP BY job_id, state;
INSERT INTO job_counts (job_id, shard, kind, name, n)
    SELECT job_id, 0, 'tasks', 'pages', count(*) FROM tasks WHERE line IS NULL GROUP BY job_id;
INSERT INTO job_counts (job_id, shard, kind, name, n, first_ms, last_ms)
    SELECT job_id, 0, 'outcomes', class, count(*), min(finished_at_ms), max(finished_at_ms)
    FROM outcomes GROUP BY job_id, class;
