-- volley schema (PostgreSQL), version 6: crawling; as SQLite's version 7.
-- seed_id: a discovered task's first ancestor (the input task its crawl or
-- pagination chain began at); NULL for inputs.
ALTER TABLE tasks ADD COLUMN seed_id bigint REFERENCES tasks (id);

-- A crawl's links on the last full body of a URL (JSON array of URLs).
ALTER TABLE resources ADD COLUMN links text;

-- The link graph of a crawl (--follow): each page's links to URLs that are
-- tasks of the job, one row per (page, URL), written with the page's outcome.
CREATE TABLE links (
    from_task bigint NOT NULL REFERENCES tasks (id),
    to_task   bigint NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (from_task, to_task)
);

-- Pages a crawl added to its job, per host and ('') in all, kept only
-- when the job has --max-crawl-pages or --max-host-pages.
CREATE TABLE crawl_counts (
    job_id bigint NOT NULL REFERENCES jobs (id),
    host   text   NOT NULL,
    pages  bigint NOT NULL,
    PRIMARY KEY (job_id, host)
);
