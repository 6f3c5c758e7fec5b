-- Removal through a trash, and garbage collection of bytes nothing lists.

-- When garbage collection deleted the blob's bytes (NULL: stored). The row itself stays
-- while stage results name the digest (they keep their history); an upload or a mirror
-- fetch of the same bytes stores them again and clears it.
ALTER TABLE blobs ADD COLUMN collected_at_ms INTEGER;

-- An index in the trash: hidden from every lookup until restored, or deleted for good
-- when its trash entry is released (NULL: live).
ALTER TABLE indexes ADD COLUMN removed_at_ms INTEGER;

-- A release or one file removed from an index: hidden at once, restorable until it
-- expires, then its files are released (and their bytes collected).
CREATE TABLE trash (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    index_id INTEGER NOT NULL REFERENCES indexes (id) ON DELETE CASCADE,
    -- 'index': the index itself (hidden, not deleted, until released); 'release': every
    -- file of one release; 'file': one file
    kind TEXT NOT NULL CHECK (kind IN ('index', 'release', 'file')),
    -- NULL for an index
    project TEXT,
    -- normalized PEP 440, the same spelling as files.version (NULL for an index)
    version TEXT,
    -- the one file removed (kind 'file')
    filename TEXT,
    reason TEXT NOT NULL,
    removed_by TEXT NOT NULL,
    removed_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX trash_by_index ON trash (index_id, project);

-- The file rows a trash entry holds, as they were (the same id, so a restore is exact).
CREATE TABLE trash_files (
    id INTEGER PRIMARY KEY,
    trash_id INTEGER NOT NULL REFERENCES trash (id) ON DELETE CASCADE,
    index_id INTEGER NOT NULL,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    filename TEXT NOT NULL,
    kind TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    requires_python TEXT,
    metadata_sha256 TEXT,
    yanked INTEGER NOT NULL,
    yanked_reason TEXT,
    uploaded_at TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    build_id INTEGER,
    provenance TEXT,
    UNIQUE (index_id, filename)
);
CREATE INDEX trash_files_by_trash ON trash_files (trash_id);
CREATE INDEX trash_files_by_sha256 ON trash_files (sha256);

-- Garbage collection asks, per blob, whether anything names it as bytes or METADATA.
CREATE INDEX files_by_metadata ON files (metadata_sha256);
CREATE INDEX mirror_files_by_metadata ON mirror_files (metadata_sha256);
CREATE INDEX trash_files_by_metadata ON trash_files (metadata_sha256);

-- Work one replica of a fleet does at a time (garbage collection): held until it expires.
CREATE TABLE fleet_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);

-- Removals, restores and released trash are events. SQLite cannot alter a CHECK
-- constraint: the table is rebuilt with its rows and ids.
CREATE TABLE events_v11 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('promotion', 'refusal', 'yank', 'unyank',
        'index-created', 'index-changed', 'index-deleted', 'token-created', 'token-revoked',
        'build-failed', 'removed', 'restored', 'released')),
    index_name TEXT,
    project TEXT,
    version TEXT,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    -- JSON: what happened, in the words the API shows
    detail TEXT NOT NULL
);
INSERT INTO events_v11 (id, kind, index_name, project, version, actor, at, detail)
SELECT id, kind, index_name, project, version, actor, at, detail FROM events;
DROP TABLE events;
ALTER TABLE events_v11 RENAME TO events;
CREATE INDEX events_by_index ON events (index_name, id);
