-- volley PostgreSQL schema, version 9: less written for each task worked
-- (bench/NOTES.md, "The service at scale").
--
-- 1. Room on each page of `tasks` for the versions its rows take while
-- they are worked. A claim (lease_owner, claim) changes no indexed column,
-- so PostgreSQL can make it a heap-only (HOT) update, which writes no index
-- entry, but only when the row's page has room for the new version. At the
-- default fillfactor (100) ingest packed the pages full, so the first claim
-- of nearly every task moved its row to another page and wrote a new entry
-- into each of the table's four indexes. Half of each page is now left
-- free, for at most twice the table's space. The setting applies to pages
-- written from now on; `VACUUM FULL tasks` rewrites the older ones.
ALTER TABLE tasks SET (fillfactor = 50);

-- 2. No foreign-key checks on the rows written once per task. Each check is
-- a query per row, and the one from an outcome to its task also locks the
-- task's row again (a WAL record per outcome). volley writes these rows
-- only in the transaction that makes or holds what they point to (an
-- outcome with the update that finishes its task, a task in its job's
-- ingest), and deletes a job's outcomes before its tasks; the SQLite store
-- has never checked them either. The other references stay checked.
ALTER TABLE outcomes DROP CONSTRAINT outcomes_task_id_fkey;
ALTER TABLE outcomes DROP CONSTRAINT outcomes_job_id_fkey;
ALTER TABLE tasks DROP CONSTRAINT tasks_job_id_fkey;
