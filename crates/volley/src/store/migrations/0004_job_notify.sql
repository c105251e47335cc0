-- volley schema, version 4: the completion webhook of a job created through
-- `volley serve`.

-- The URL POSTed once with the job's summary when it is done or cancelled.
ALTER TABLE jobs ADD COLUMN notify TEXT;
-- How that went: 'sent', or why it failed after its retries; NULL while
-- not yet tried, so a restarted server delivers what it still owes.
ALTER TABLE jobs ADD COLUMN notified TEXT;
