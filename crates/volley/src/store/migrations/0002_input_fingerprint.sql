-- volley schema, version 2: tell an edited input from the one a job read.

-- Hex SHA-256 over the inputs read so far (each input's line number, URL or
-- raw text, and metadata), through jobs.ingested_lines. A rerun recomputes it
-- while skipping those lines and refuses an input whose read part changed.
ALTER TABLE jobs ADD COLUMN input_fingerprint TEXT;
-- Size and modification time of each input file when the job last read it.
-- A finished job whose files changed is read again from its cursor, so lines
-- appended since are fetched.
ALTER TABLE jobs ADD COLUMN input_stamp TEXT;
