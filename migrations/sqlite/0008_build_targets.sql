-- Builds per target: a project whose wheel is platform-specific is built once per
-- target (the wheel tag of the runner's interpreter and platform, e.g.
-- `cp312-cp312-manylinux_2_36_x86_64`). '' is the release's first build, the only one a
-- pure project ever has. The lease key becomes (index, project, version, target).
--
-- SQLite cannot change a table's UNIQUE constraint in place, so the table is rebuilt
-- with the same ids. Dropping the old table runs the files.build_id foreign key's
-- ON DELETE SET NULL, so the links are saved first and put back afterwards.
CREATE TABLE builds_v8 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    index_id INTEGER NOT NULL REFERENCES indexes (id) ON DELETE CASCADE,
    project TEXT NOT NULL,
    -- normalized PEP 440, the same spelling as files.version
    version TEXT NOT NULL,
    -- '' for the release's first build; a wheel tag for a build for another target
    target TEXT NOT NULL DEFAULT '',
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
    source_commit TEXT,
    provenance TEXT,
    UNIQUE (index_id, project, version, target)
);
INSERT INTO builds_v8 (id, index_id, project, version, target, state, lease_id, attempt, builder,
    expires_at_ms, error_tail, created_at, updated_at, source_commit, provenance)
SELECT id, index_id, project, version, '', state, lease_id, attempt, builder,
    expires_at_ms, error_tail, created_at, updated_at, source_commit, provenance
FROM builds;
CREATE TABLE file_builds_v8 (file_id INTEGER PRIMARY KEY, build_id INTEGER NOT NULL);
INSERT INTO file_builds_v8 (file_id, build_id)
SELECT id, build_id FROM files WHERE build_id IS NOT NULL;
DROP TABLE builds;
ALTER TABLE builds_v8 RENAME TO builds;
UPDATE files SET build_id = (SELECT b.build_id FROM file_builds_v8 b WHERE b.file_id = files.id)
WHERE id IN (SELECT file_id FROM file_builds_v8);
DROP TABLE file_builds_v8;

-- The dependency-confusion guard asks whether a name is published on any stage index of
-- the server, whatever the chain: answered from this index.
CREATE INDEX files_by_project_name ON files (project);

-- The origins a mirror may download files from besides its upstream's own (JSON list of
-- `scheme://host[:port]`); '[]' for the upstream's default (PyPI: files.pythonhosted.org).
ALTER TABLE indexes ADD COLUMN mirror_file_origins TEXT NOT NULL DEFAULT '[]';
