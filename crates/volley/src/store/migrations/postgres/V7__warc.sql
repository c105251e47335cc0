-- volley schema (PostgreSQL), version 7: web archives (--warc); as
-- SQLite's version 8.
CREATE TABLE warc_files (
    id            bigserial PRIMARY KEY,               -- the serial in the name
    job_id        bigint NOT NULL REFERENCES jobs (id),
    path          text   NOT NULL UNIQUE,
    committed_end bigint NOT NULL DEFAULT 0            -- bytes
);
CREATE INDEX warc_files_job ON warc_files (job_id);

CREATE TABLE warc_records (
    id             bigserial PRIMARY KEY,
    task_id        bigint NOT NULL REFERENCES tasks (id),
    file_id        bigint NOT NULL REFERENCES warc_files (id),
    offset_bytes   bigint NOT NULL,
    length_bytes   bigint NOT NULL,
    kind           text   NOT NULL,
    target_uri     text   NOT NULL,
    urlkey         text   NOT NULL,
    date           text   NOT NULL,
    status         integer,
    mime           text,
    payload_digest text,
    record_id      text   NOT NULL,
    complete       boolean NOT NULL
);
CREATE INDEX warc_records_task ON warc_records (task_id);
CREATE INDEX warc_records_digest ON warc_records (payload_digest)
    WHERE kind = 'response' AND complete;
CREATE INDEX warc_records_uri ON warc_records (target_uri);

ALTER TABLE outcomes ADD COLUMN warc_file text;
ALTER TABLE outcomes ADD COLUMN warc_offset bigint;
ALTER TABLE outcomes ADD COLUMN warc_length bigint;
