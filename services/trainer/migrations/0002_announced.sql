-- Up Migration
-- A run's final event (fw.trainer.run.completed or .failed) is stored with the
-- final state in one statement and marked announced once the bus acked it; a
-- trainer that dies in between announces it at its next start.
ALTER TABLE runs ADD COLUMN final_event jsonb;
ALTER TABLE runs ADD COLUMN announced boolean NOT NULL DEFAULT true;
ALTER TABLE runs ALTER COLUMN announced SET DEFAULT false;
CREATE INDEX runs_unannounced_idx ON runs (id) WHERE NOT announced;

-- Down Migration
DROP INDEX runs_unannounced_idx;
ALTER TABLE runs DROP COLUMN announced;
ALTER TABLE runs DROP COLUMN final_event;
