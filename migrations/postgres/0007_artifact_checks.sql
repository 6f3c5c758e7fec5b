-- PostgreSQL twin of migrations/sqlite/0007_artifact_checks.sql.
ALTER TABLE stage_results ADD COLUMN artifact TEXT;
