-- volley schema, version 7: crawling.
-- seed_id: a discovered task's first ancestor (the input task its crawl or
-- pagination chain began at), so that --scope prefix and --check-external
-- decide against the seed; NULL for inputs.
ALTER TABLE tasks ADD COLUMN seed_id INTEGER REFERENCES tasks (id);

-- A crawl's links on the last full body of a URL (a JSON array of URLs),
-- followed again when the page is not_modified or fresh (--refresh,
-- --max-age): a body not read again still leads where it did.
ALTER TABLE resources ADD COLUMN links TEXT;

-- The link graph of a crawl (--follow): each page's links to URLs that are
-- tasks of the job (followed, or checked with --check-external), one row
-- per (page, URL), written with the page's outcome. Links the crawl
-- neither follows nor checks are not here.
CREATE TABLE links (
    from_task INTEGER NOT NULL REFERENCES tasks (id),  -- the page naming the link
    to_task   INTEGER NOT NULL REFERENCES tasks (id),  -- the task of the URL it names
    PRIMARY KEY (from_task, to_task)
) WITHOUT ROWID;

-- Pages a crawl added to its job, per host and ('') in all, kept only
-- when the job has --max-crawl-pages or --max-host-pages (seeds are not
-- counted), updated in the transaction that adds them.
CREATE TABLE crawl_counts (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    host   TEXT    NOT NULL,                     -- '' for the whole job
    pages  INTEGER NOT NULL,
    PRIMARY KEY (job_id, host)
) WITHOUT ROWID;
