-- PostgreSQL twin of migrations/sqlite/0006_verdict_integrity.sql.
-- Verdict integrity: provenance of builds and files, verdicts that belong to an index,
-- a third outcome (`error`: the stage could not run), and events for index and token
-- changes.

ALTER TABLE builds ADD COLUMN source_commit TEXT;
ALTER TABLE builds ADD COLUMN provenance TEXT;

ALTER TABLE files ADD COLUMN build_id BIGINT REFERENCES builds (id) ON DELETE SET NULL;
ALTER TABLE files ADD COLUMN provenance TEXT;

-- Results belong to the index they were reported for (see the SQLite twin for how
-- earlier results are assigned).
ALTER TABLE stage_results ADD COLUMN index_id BIGINT REFERENCES indexes (id) ON DELETE CASCADE;
UPDATE stage_results r SET index_id =
    (SELECT f.index_id FROM files f WHERE f.sha256 = r.sha256 ORDER BY f.id LIMIT 1);
DELETE FROM stage_results WHERE index_id IS NULL;
ALTER TABLE stage_results ALTER COLUMN index_id SET NOT NULL;
ALTER TABLE stage_results DROP CONSTRAINT stage_results_sha256_stage_run_id_key;
ALTER TABLE stage_results ADD CONSTRAINT stage_results_index_sha256_stage_run_id_key
    UNIQUE (index_id, sha256, stage, run_id);
ALTER TABLE stage_results DROP CONSTRAINT stage_results_outcome_check;
ALTER TABLE stage_results ADD CONSTRAINT stage_results_outcome_check
    CHECK (outcome IN ('pass', 'fail', 'error'));
ALTER TABLE stage_results ADD COLUMN cause TEXT;
ALTER TABLE stage_results ADD COLUMN after_promotion BIGINT NOT NULL DEFAULT 0
    CHECK (after_promotion IN (0, 1));
DROP INDEX stage_results_by_artifact;
CREATE INDEX stage_results_by_artifact ON stage_results (index_id, sha256, stage, id);
CREATE INDEX stage_results_by_digest ON stage_results (sha256, id);

ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind IN ('promotion', 'refusal',
    'yank', 'unyank', 'index-created', 'index-changed', 'index-deleted', 'token-created',
    'token-revoked'));
ALTER TABLE events ALTER COLUMN index_name DROP NOT NULL;
ALTER TABLE events ALTER COLUMN project DROP NOT NULL;
ALTER TABLE events ALTER COLUMN version DROP NOT NULL;
