-- volley schema (PostgreSQL), version 4: what the database remembers of
-- each URL, for refresh jobs. The same as SQLite's 0005_resources.sql;
-- documented in README.md ("The database").
CREATE TABLE resources (
    url            text    PRIMARY KEY,
    status         integer,
    etag           text,
    last_modified  text,
    body_sha256    text,
    body_path      text,
    bytes          bigint,
    content_type   text,
    next_url       text,
    checked_at_ms  bigint  NOT NULL,
    changed_at_ms  bigint  NOT NULL,
    fresh_until_ms bigint
);

-- 1 when the body differs from the one remembered (or none was), 0 when the
-- same, NULL when the run did not compare. An integer as in SQLite, so both
-- stores export it alike.
ALTER TABLE outcomes ADD COLUMN changed integer;
