-- volley schema, version 5: what the database remembers of each URL, for
-- refresh jobs (--refresh, --max-age, --respect-cache-control). Documented
-- in README.md ("The database").

-- One row per URL (as requested, before redirects), across jobs, updated in
-- the transaction of each `ok` (replaced) and `not_modified` (re-checked)
-- outcome.
CREATE TABLE resources (
    url            TEXT    PRIMARY KEY,
    status         INTEGER,                      -- status of the last full response
    etag           TEXT,                         -- its ETag, as received (W/"…" stays weak)
    last_modified  TEXT,                         -- its Last-Modified, as received
    body_sha256    TEXT,                         -- hex SHA-256 of the last body
    body_path      TEXT,                         -- where it was saved (--save-bodies)
    bytes          INTEGER,                      -- its decoded size
    content_type   TEXT,
    next_url       TEXT,                         -- the next page it named (pagination)
    checked_at_ms  INTEGER NOT NULL,             -- last 200 or 304 for it
    changed_at_ms  INTEGER NOT NULL,             -- when its body hash last changed
    fresh_until_ms INTEGER                       -- Cache-Control max-age / Expires; NULL: none
) WITHOUT ROWID;

-- Whether the body differs from the one remembered for the URL (1, and 1
-- for a URL never seen), 0 when the same; NULL when the run did not compare.
ALTER TABLE outcomes ADD COLUMN changed INTEGER;
