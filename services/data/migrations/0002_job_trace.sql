-- Up Migration
-- The trace of the run that last claimed a job, so a job row can be found
-- from a trace and the other way round.
ALTER TABLE jobs ADD COLUMN trace_id text;

-- Down Migration
ALTER TABLE jobs DROP COLUMN trace_id;
