-- Slide jobs shared by the servers of a deployment; pg-boss (schema pgboss) hands them out.
CREATE TABLE slide_jobs (
  id TEXT PRIMARY KEY,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  status TEXT NOT NULL,
  file_name TEXT NOT NULL,
  slide_path TEXT NOT NULL,
  uploaded BOOLEAN NOT NULL,
  slide_mpp DOUBLE PRECISION,
  done INTEGER NOT NULL DEFAULT 0,
  total INTEGER NOT NULL DEFAULT 0,
  error JSONB,
  summary JSONB,
  model_id TEXT NOT NULL,
  -- Which server took it, and how often it was taken (more than once after a server died).
  worker TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  seq BIGSERIAL NOT NULL
);
CREATE INDEX slide_jobs_created ON slide_jobs (created_at DESC, seq DESC);
