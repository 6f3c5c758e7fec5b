-- Kiln core schema: indexes with ordered bases, content-addressed blobs, the files each
-- index lists, and API tokens. Flags are INTEGER 0/1 and times RFC 3339 text so the same
-- queries run on SQLite and PostgreSQL.

CREATE TABLE kiln_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    -- bumped by every write transaction; caches compare against it
    generation INTEGER NOT NULL,
    bootstrapped_at TEXT
);
INSERT INTO kiln_meta (id, generation) VALUES (1, 0);

CREATE TABLE indexes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('stage')),
    volatile INTEGER NOT NULL CHECK (volatile IN (0, 1)),
    promotion_only INTEGER NOT NULL CHECK (promotion_only IN (0, 1)),
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (namespace, name)
);

CREATE TABLE index_bases (
    index_id INTEGER NOT NULL REFERENCES indexes (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    base_id INTEGER NOT NULL REFERENCES indexes (id),
    PRIMARY KEY (index_id, position)
);
CREATE INDEX index_bases_by_base ON index_bases (base_id);

-- One row per distinct artifact, however many indexes list it.
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    index_id INTEGER NOT NULL REFERENCES indexes (id) ON DELETE CASCADE,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    filename TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('wheel', 'sdist')),
    sha256 TEXT NOT NULL REFERENCES blobs (sha256),
    size INTEGER NOT NULL,
    requires_python TEXT,
    metadata_sha256 TEXT REFERENCES blobs (sha256),
    yanked INTEGER NOT NULL DEFAULT 0 CHECK (yanked IN (0, 1)),
    yanked_reason TEXT,
    uploaded_at TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    UNIQUE (index_id, filename)
);
-- The simple page of one project costs O(files of that project in the chain).
CREATE INDEX files_by_project ON files (index_id, project);
CREATE INDEX files_by_sha256 ON files (sha256);

CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    -- only the SHA-256 of the secret is stored
    secret_sha256 TEXT NOT NULL UNIQUE,
    is_admin INTEGER NOT NULL CHECK (is_admin IN (0, 1)),
    created_at TEXT NOT NULL
);
