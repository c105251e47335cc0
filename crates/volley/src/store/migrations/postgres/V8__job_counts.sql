-- volley PostgreSQL schema, version 8: a job's counts kept as they change,
-- so that its status does not scan its tasks and outcomes
-- (store/counts.rs). Every transaction that adds a task, claims or gives
-- one back, or records an outcome adds its changes here before it commits,
-- into the rows of its worker's shard (workers.id % 16), so that workers
-- never wait on each other's counters. A counter is the sum over shards.
CREATE TABLE job_counts (
    job_id   bigint NOT NULL REFERENCES jobs (id),
    shard    int    NOT NULL,
    kind     text   NOT NULL CHECK (kind IN ('tasks', 'outcomes')),
    name     text   NOT NULL,   -- tasks: pending, leased, done, failed, pages; outcomes: the class
    n        bigint NOT NULL,
    first_ms bigint,            -- outcomes: the first and last finished_at_ms (Unix ms)
    last_ms  bigint,
    PRIMARY KEY (job_id, shard, kind, name)
);

-- The counts of the jobs already in the database. A pending task with an
-- owner is leased.
INSERT INTO job_counts (job_id, shard, kind, name, n)
    SELECT job_id, 0, 'tasks',
           CASE WHEN state = 'pending' AND lease_owner IS NOT NULL THEN 'leased' ELSE state END,
           count(*)
    FROM tasks
    GROUP BY 1, 4;
INSERT INTO job_counts (job_id, shard, kind, name, n)
    SELECT job_id, 0, 'tasks', 'pages', count(*) FROM tasks WHERE line IS NULL GROUP BY job_id;
INSERT INTO job_counts (job_id, shard, kind, name, n, first_ms, last_ms)
    SELECT job_id, 0, 'outcomes', class, count(*), min(finished_at_ms), max(finished_at_ms)
    FROM outcomes GROUP BY job_id, class;
