-- Verdict integrity: provenance of builds and files, verdicts that belong to an index,
-- a third outcome (`error`: the stage could not run), and events for index and token
-- changes.

-- The source a build was claimed for, and the CI run, runner and environment that built
-- it (JSON, see `domain::Provenance`). NULL only on builds claimed before this migration.
ALTER TABLE builds ADD COLUMN source_commit TEXT;
ALTER TABLE builds ADD COLUMN provenance TEXT;

-- A file uploaded under a build lease names that build and carries its provenance; a
-- promotion copies both to the target's row. NULL: uploaded by hand (twine), no lease.
ALTER TABLE files ADD COLUMN build_id INTEGER REFERENCES builds (id) ON DELETE SET NULL;
ALTER TABLE files ADD COLUMN provenance TEXT;

-- Results now belong to the index they were reported for: the same bytes on another
-- index never lend it their verdicts. Results recorded before this migration are given
-- to the index the bytes were first uploaded to (where they were built), and results of
-- bytes no index lists any more are dropped: they could not count for anything.
CREATE TABLE stage_results_v6 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    index_id INTEGER NOT NULL REFERENCES indexes (id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL REFERENCES blobs (sha256),
    stage TEXT NOT NULL,
    run_id TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('pass', 'fail', 'error')),
    -- why an `error` stage could not run (command not found, signal, timeout, …)
    cause TEXT,
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
    -- 1 when the release had already been promoted from this index when it was reported:
    -- kept and shown, but it changes nothing on the target
    after_promotion INTEGER NOT NULL DEFAULT 0 CHECK (after_promotion IN (0, 1)),
    -- a re-run of the same CI run replaces its row (and gets a new, higher id)
    UNIQUE (index_id, sha256, stage, run_id)
);
INSERT INTO stage_results_v6 (id, index_id, sha256, stage, run_id, outcome, exit_code, duration_ms,
    environment, log_tail, tests, failures, errors, skipped, reported_by, reported_at)
SELECT r.id,
       (SELECT f.index_id FROM files f WHERE f.sha256 = r.sha256 ORDER BY f.id LIMIT 1),
       r.sha256, r.stage, r.run_id, r.outcome, r.exit_code, r.duration_ms, r.environment,
       r.log_tail, r.tests, r.failures, r.errors, r.skipped, r.reported_by, r.reported_at
FROM stage_results r
WHERE EXISTS (SELECT 1 FROM files f WHERE f.sha256 = r.sha256);
DROP TABLE stage_results;
ALTER TABLE stage_results_v6 RENAME TO stage_results;
-- "latest result per stage" is the highest id per (index, sha256, stage)
CREATE INDEX stage_results_by_artifact ON stage_results (index_id, sha256, stage, id);
CREATE INDEX stage_results_by_digest ON stage_results (sha256, id);

-- Events gain index and token changes. A token event concerns no index (NULL); an index
-- event no project or version.
CREATE TABLE events_v6 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('promotion', 'refusal', 'yank', 'unyank',
        'index-created', 'index-changed', 'index-deleted', 'token-created', 'token-revoked')),
    index_name TEXT,
    project TEXT,
    version TEXT,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    -- JSON: what happened, in the words the API shows
    detail TEXT NOT NULL
);
INSERT INTO events_v6 (id, kind, index_name, project, version, actor, at, detail)
SELECT id, kind, index_name, project, version, actor, at, detail FROM events;
DROP TABLE events;
ALTER TABLE events_v6 RENAME TO events;
CREATE INDEX events_by_index ON events (index_name, id);
