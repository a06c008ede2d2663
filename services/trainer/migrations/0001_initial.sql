-- Up Migration
-- The trainer's own schema: runs, their attempts (a restart from a checkpoint
-- is a new attempt), the worker processes of each attempt, checkpoints, the
-- metric series, the datasets announced on the bus, trigger policies and the
-- ids of events already handled.

CREATE TABLE runs (
  id               text PRIMARY KEY,
  status           text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
  trigger          text NOT NULL,
  -- The normalised request (dataset, model, method, hyperparameters, ...).
  spec             jsonb NOT NULL,
  dataset_name     text,
  dataset_version  text,
  manifest_uri     text NOT NULL,
  world_size       integer NOT NULL CHECK (world_size >= 1),
  max_steps        integer NOT NULL CHECK (max_steps >= 1),
  restart_budget   integer NOT NULL CHECK (restart_budget >= 0),
  restarts         integer NOT NULL DEFAULT 0,
  attempt          integer NOT NULL DEFAULT 0,
  last_step        integer NOT NULL DEFAULT 0,
  last_loss        double precision,
  model_uri        text,
  reason           text,
  stage            text,
  owner            text,
  cancel_requested boolean NOT NULL DEFAULT false,
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  finished_at      timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_status_idx ON runs (status, created_at);

CREATE TABLE attempts (
  run_id            text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  attempt           integer NOT NULL,
  status            text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
  resumed_from_step integer NOT NULL DEFAULT 0,
  reason            text,
  started_at        timestamptz NOT NULL DEFAULT now(),
  ended_at          timestamptz,
  PRIMARY KEY (run_id, attempt)
);

CREATE TABLE ranks (
  run_id     text NOT NULL,
  attempt    integer NOT NULL,
  rank       integer NOT NULL,
  pid        integer,
  host       text,
  exit_code  integer,
  signal     text,
  started_at timestamptz NOT NULL DEFAULT now(),
  ended_at   timestamptz,
  PRIMARY KEY (run_id, attempt, rank),
  FOREIGN KEY (run_id, attempt) REFERENCES attempts (run_id, attempt) ON DELETE CASCADE
);

CREATE TABLE checkpoints (
  run_id     text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  step       integer NOT NULL,
  attempt    integer NOT NULL,
  path       text NOT NULL,
  reason     text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, step)
);

-- One row per (run, rank, step); a step re-run after a restart replaces its row.
CREATE TABLE metrics (
  run_id       text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  rank         integer NOT NULL,
  step         integer NOT NULL,
  attempt      integer NOT NULL,
  loss         double precision,
  lr           double precision,
  grad_norm    double precision,
  tokens_per_s double precision,
  val_loss     double precision,
  at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, rank, step)
);

-- Dataset versions announced by fw.data.dataset.ready: how a run names its data.
CREATE TABLE datasets (
  name         text NOT NULL,
  version      text NOT NULL,
  dataset_id   text NOT NULL,
  manifest_uri text NOT NULL,
  tokenizer    text NOT NULL,
  ready_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version)
);

-- When a dataset gets a new version, start a run from this template.
CREATE TABLE policies (
  dataset_name text PRIMARY KEY,
  enabled      boolean NOT NULL DEFAULT true,
  template     jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE processed_events (
  id       text PRIMARY KEY,
  subject  text NOT NULL,
  run_id   text,
  at       timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE processed_events;
DROP TABLE policies;
DROP TABLE datasets;
DROP TABLE metrics;
DROP TABLE checkpoints;
DROP TABLE ranks;
DROP TABLE attempts;
DROP TABLE runs;
