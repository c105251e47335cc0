-- volley PostgreSQL schema, version 3: jobs managed through `volley serve`
-- (the SQLite schema's versions 3 and 4).

-- What the job's owner asked for: 'active' (fetch it), 'paused' (hold it)
-- or 'cancelled' (its unfinished tasks got a 'cancelled' outcome).
ALTER TABLE jobs ADD COLUMN state text NOT NULL DEFAULT 'active'
    CHECK (state IN ('active', 'paused', 'cancelled'));
-- The completion webhook's URL, and how sending it went ('sent', or the
-- last failure; NULL while owed).
ALTER TABLE jobs ADD COLUMN notify text;
ALTER TABLE jobs ADD COLUMN notified text;
