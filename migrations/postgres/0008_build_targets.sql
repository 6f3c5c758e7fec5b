-- PostgreSQL twin of migrations/sqlite/0008_build_targets.sql: builds per target, keyed
-- by (index, project, version, target); '' is the release's first build.
ALTER TABLE builds ADD COLUMN target TEXT NOT NULL DEFAULT '';
ALTER TABLE builds DROP CONSTRAINT builds_index_id_project_version_key;
ALTER TABLE builds ADD CONSTRAINT builds_index_id_project_version_target_key
    UNIQUE (index_id, project, version, target);

-- The dependency-confusion guard asks whether a name is published on any stage index of
-- the server, whatever the chain: answered from this index.
CREATE INDEX files_by_project_name ON files (project);

-- The origins a mirror may download files from besides its upstream's own (JSON list of
-- `scheme://host[:port]`); '[]' for the upstream's default (PyPI: files.pythonhosted.org).
ALTER TABLE indexes ADD COLUMN mirror_file_origins TEXT NOT NULL DEFAULT '[]';
