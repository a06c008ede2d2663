-- Up Migration
-- The data service's own schema: datasets, their versions, ingest jobs,
-- quarantined input, processed event ids and the near-duplicate band index.

CREATE TABLE datasets (
  id          uuid PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- An ingest job: one source, one pipeline config, at most one resulting version.
CREATE TABLE jobs (
  id             text PRIMARY KEY,
  dataset_name   text NOT NULL,
  source_uri     text NOT NULL,
  format         text NOT NULL,
  config         jsonb NOT NULL,
  status         text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
  attempts       integer NOT NULL DEFAULT 0,
  progress       jsonb NOT NULL DEFAULT '{}'::jsonb,
  error          text,
  error_stage    text,
  version        text,
  owner          text,
  heartbeat_at   timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_dataset_idx ON jobs (dataset_name, created_at DESC);

-- A dataset version exists only once complete: the row is written in the same
-- transaction that marks its job succeeded, after every artifact is stored.
CREATE TABLE versions (
  id              uuid PRIMARY KEY,
  dataset_id      uuid NOT NULL REFERENCES datasets (id),
  version         text NOT NULL,
  content_sha256  text NOT NULL,
  config_sha256   text NOT NULL,
  job_id          text NOT NULL REFERENCES jobs (id),
  manifest_uri    text NOT NULL,
  manifest        jsonb NOT NULL,
  report          jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (dataset_id, version)
);

CREATE TABLE quarantine (
  id          bigserial PRIMARY KEY,
  job_id      text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  ref         text NOT NULL,
  reason      text NOT NULL,
  sample      text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantine_job_idx ON quarantine (job_id, id);

-- Event ids already applied: a redelivered event is processed once.
CREATE TABLE processed_events (
  event_id      text PRIMARY KEY,
  subject       text NOT NULL,
  processed_at  timestamptz NOT NULL DEFAULT now()
);

-- MinHash LSH band keys of every stored version, shared by all replicas, so a
-- new version is deduplicated against earlier ones.
CREATE TABLE lsh_bands (
  band_key    bigint NOT NULL,
  version_id  uuid NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
  dataset_id  uuid NOT NULL REFERENCES datasets (id),
  PRIMARY KEY (band_key, version_id)
);
CREATE INDEX lsh_bands_dataset_idx ON lsh_bands (dataset_id, band_key);

-- Down Migration
DROP TABLE lsh_bands;
DROP TABLE processed_events;
DROP TABLE quarantine;
DROP TABLE versions;
DROP TABLE jobs;
DROP TABLE datasets;
