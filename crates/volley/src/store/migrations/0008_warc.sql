-- volley schema, version 8: web archives (--warc).
-- Each WARC file a job writes, and where its last committed record ends:
-- a run cuts a file back to committed_end before appending, so a record
-- torn by a crash, or written for an outcome that never committed, is
-- never left for a reader.
CREATE TABLE warc_files (
    id            INTEGER PRIMARY KEY,                   -- the serial in the name
    job_id        INTEGER NOT NULL REFERENCES jobs (id),
    path          TEXT    NOT NULL UNIQUE,
    committed_end INTEGER NOT NULL DEFAULT 0             -- bytes
);
CREATE INDEX warc_files_job ON warc_files (job_id);

-- Every response and revisit record (request records sit beside them, in
-- the outcome's span): the CDXJ index (`volley export --cdxj`), and the
-- earlier captures a revisit points at.
CREATE TABLE warc_records (
    task_id        INTEGER NOT NULL REFERENCES tasks (id),
    file_id        INTEGER NOT NULL REFERENCES warc_files (id),
    offset_bytes   INTEGER NOT NULL,   -- where its gzip member starts
    length_bytes   INTEGER NOT NULL,   -- the gzip member's length
    kind           TEXT    NOT NULL,   -- 'response' or 'revisit'
    target_uri     TEXT    NOT NULL,
    urlkey         TEXT    NOT NULL,   -- SURT form of target_uri
    date           TEXT    NOT NULL,   -- WARC-Date
    status         INTEGER,
    mime           TEXT,
    payload_digest TEXT,               -- 'sha1:BASE32'
    record_id      TEXT    NOT NULL,
    complete       INTEGER NOT NULL    -- 1 when the payload is whole
);
CREATE INDEX warc_records_task ON warc_records (task_id);
CREATE INDEX warc_records_digest ON warc_records (payload_digest)
    WHERE kind = 'response' AND complete = 1;
CREATE INDEX warc_records_uri ON warc_records (target_uri);

-- Each outcome's records: the span of one file from its first record to
-- the end of its last (a redirect chain's pairs are written together).
ALTER TABLE outcomes ADD COLUMN warc_file TEXT;
ALTER TABLE outcomes ADD COLUMN warc_offset INTEGER;
ALTER TABLE outcomes ADD COLUMN warc_length INTEGER;
