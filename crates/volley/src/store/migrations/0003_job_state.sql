-- volley schema, version 3: jobs managed through `volley serve`.

-- What the job's owner asked for: 'active' (fetch it), 'paused' (hold it;
-- resume later) or 'cancelled' (its unfinished tasks got a 'cancelled'
-- outcome). Running, done and waiting are derived from the task counts.
ALTER TABLE jobs ADD COLUMN state TEXT NOT NULL DEFAULT 'active'
    CHECK (state IN ('active', 'paused', 'cancelled'));
-- The job's fetch options as given when it was created (JSON, FetchSpec's
-- serde form), so that a restarted server runs it the same way.
ALTER TABLE jobs ADD COLUMN options TEXT;
