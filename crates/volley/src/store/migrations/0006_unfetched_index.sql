-- volley schema, version 6: the outcomes recorded while the input is read
-- (invalid lines, duplicates) found without scanning a job's outcomes,
-- for the end of a streamed job (the Python package). A partial index:
-- fetched outcomes, nearly all of them, add nothing to it.
CREATE INDEX outcomes_unfetched ON outcomes (task_id)
    WHERE class IN ('invalid_url', 'invalid_input', 'duplicate');
