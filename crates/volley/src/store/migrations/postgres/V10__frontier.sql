-- volley PostgreSQL schema, version 10: the frontier, a small row for each
-- task still to finish, holding its lease (bench/NOTES.md, "The service at
-- scale").
--
-- Before, a task's lease (lease_owner, claim) lived in its `tasks` row and
-- a partial index over `state = 'pending'` found the tasks to claim. The
-- update that finishes a task changes `state`, which that index's predicate
-- reads, so it could never be a heap-only (HOT) update: it wrote a new
-- entry into each of the table's indexes, once per task.
--
-- Now a task still to finish has a `frontier` row as well: it is made with
-- the task (at ingest, or as a page or link a record adds), a claim updates
-- it alone (owner and claim number, neither indexed, so a HOT update of a
-- small row), and the record that finishes the task deletes it, fencing on
-- its claim number. The task's own update (`state`) is then HOT too, since
-- no index of `tasks` reads `state` any more.
--
-- A task has a frontier row exactly while its state is 'pending'; the row's
-- owner, when set, is the worker holding the lease (the task is "leased").
-- No foreign key, for the reason of version 9: volley writes the row only in
-- the transaction that makes or finishes its task.
CREATE TABLE frontier (
    task_id     bigint PRIMARY KEY,           -- tasks.id
    job_id      bigint NOT NULL,
    host        text,
    lease_owner bigint,                       -- workers.id holding the lease
    claim       bigint NOT NULL DEFAULT 0     -- fencing token: +1 per claim
) WITH (fillfactor = 50);

INSERT INTO frontier (task_id, job_id, host, lease_owner, claim)
    SELECT id, job_id, host, lease_owner, claim FROM tasks WHERE state = 'pending';

CREATE INDEX frontier_claim ON frontier (job_id, host, task_id);

DROP INDEX tasks_pending;
ALTER TABLE tasks DROP COLUMN lease_owner, DROP COLUMN claim;
