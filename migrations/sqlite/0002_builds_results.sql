-- Build leases (one build per index, project and version, fleet-wide) and the stage
-- results CI reports against an artifact's sha256.

CREATE TABLE builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    index_id INTEGER NOT NULL REFERENCES indexes (id) ON DELETE CASCADE,
    project TEXT NOT NULL,
    -- normalized PEP 440, the same spelling as files.version
    version TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('building', 'ready', 'failed')),
    -- the secret a builder proves it holds the lease with; a takeover replaces it
    lease_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    -- who builds: token name and a runner description
    builder TEXT NOT NULL,
    -- milliseconds since the Unix epoch: compared numerically on every backend
    expires_at_ms INTEGER NOT NULL,
    error_tail TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (index_id, project, version)
);

CREATE TABLE stage_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL REFERENCES blobs (sha256),
    stage TEXT NOT NULL,
    run_id TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('pass', 'fail')),
    exit_code INTEGER,
    duration_ms INTEGER NOT NULL,
    -- a JSON object of allowlisted facts about the runner
    environment TEXT NOT NULL,
    log_tail TEXT NOT NULL,
    tests INTEGER,
    failures INTEGER,
    errors INTEGER,
    skipped INTEGER,
    reported_by TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    -- a re-run of the same CI run replaces its row (and gets a new, higher id)
    UNIQUE (sha256, stage, run_id)
);
-- "latest result per stage" is the highest id per (sha256, stage)
CREATE INDEX stage_results_by_artifact ON stage_results (sha256, stage, id);

-- The git branch a branch index was created for (NULL for every other index), so a
-- branch whose slug lands on someone else's index is refused instead of sharing it.
ALTER TABLE indexes ADD COLUMN branch TEXT;
