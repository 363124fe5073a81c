-- pathotype serve: predictions and API keys shared by every server of a deployment.
CREATE TABLE predictions (
  id TEXT PRIMARY KEY,
  created_at TIMESTAMPTZ NOT NULL,
  file_name TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL,
  model_id TEXT NOT NULL,
  model_version INTEGER NOT NULL,
  result JSONB NOT NULL,
  timings JSONB NOT NULL,
  client JSONB NOT NULL,
  image_file TEXT,
  seq BIGSERIAL NOT NULL
);
CREATE INDEX predictions_created ON predictions (created_at DESC, seq DESC);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  prefix TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_at TIMESTAMPTZ NOT NULL,
  revoked_at TIMESTAMPTZ,
  last_used_at TIMESTAMPTZ
);
