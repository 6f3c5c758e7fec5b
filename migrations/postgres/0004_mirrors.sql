-- PostgreSQL twin of migrations/sqlite/0004_mirrors.sql: mirror indexes, caching proxies
-- of an upstream simple index. PostgreSQL widens the kind constraint in place.
ALTER TABLE indexes DROP CONSTRAINT indexes_kind_check;
ALTER TABLE indexes ADD CONSTRAINT indexes_kind_check CHECK (kind IN ('stage', 'mirror'));
ALTER TABLE indexes ALTER COLUMN kind SET DEFAULT 'stage';
-- The upstream simple-API root, e.g. https://pypi.org/simple/ (mirrors only).
ALTER TABLE indexes ADD COLUMN mirror_url TEXT;
-- Optional HTTP basic credentials for the upstream (sent only to the upstream's host).
ALTER TABLE indexes ADD COLUMN mirror_username TEXT;
ALTER TABLE indexes ADD COLUMN mirror_password TEXT;
-- How long a fetched project page is served before it is asked for again.
ALTER TABLE indexes ADD COLUMN mirror_ttl_seconds BIGINT;
-- Stage indexes: project names (normalized, JSON array; "*" for all) that mirrors further
-- down the chain may still serve although this index has its own files of that name.
ALTER TABLE indexes ADD COLUMN mirror_allow TEXT NOT NULL DEFAULT '[]';

-- One row per project page a mirror has asked its upstream about.
CREATE TABLE mirror_projects (
    index_id BIGINT NOT NULL REFERENCES indexes (id) ON DELETE CASCADE,
    project TEXT NOT NULL,
    -- 'found': the files are in mirror_files; 'missing': upstream answered 404
    status TEXT NOT NULL CHECK (status IN ('found', 'missing')),
    fetched_at_ms BIGINT NOT NULL,
    -- the upstream's ETag, for a conditional refresh
    etag TEXT,
    -- SHA-256 of the stored listing, so an unchanged refresh writes nothing visible
    listing_sha256 TEXT NOT NULL,
    PRIMARY KEY (index_id, project)
);

-- The files an upstream page lists. The bytes are fetched on first download and then
-- live in blobs/storage like any other artifact, by sha256.
CREATE TABLE mirror_files (
    index_id BIGINT NOT NULL REFERENCES indexes (id) ON DELETE CASCADE,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    filename TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('wheel', 'sdist')),
    sha256 TEXT NOT NULL,
    -- NULL when the upstream page did not say (HTML pages never do)
    size BIGINT,
    requires_python TEXT,
    metadata_sha256 TEXT,
    yanked BIGINT NOT NULL DEFAULT 0 CHECK (yanked IN (0, 1)),
    yanked_reason TEXT,
    upload_time TEXT,
    -- absolute URL of the file upstream
    url TEXT NOT NULL,
    PRIMARY KEY (index_id, filename)
);
CREATE INDEX mirror_files_by_project ON mirror_files (index_id, project);
CREATE INDEX mirror_files_by_sha256 ON mirror_files (sha256);
