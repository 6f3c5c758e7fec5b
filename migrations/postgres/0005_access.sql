-- PostgreSQL twin of migrations/sqlite/0005_access.sql: scoped, expiring, revocable
-- tokens and private indexes.
--
-- A token's scopes are a JSON array of `permission:pattern` strings, e.g.
-- ["upload:acme/*", "report:acme/*"]. The old admin flag becomes the scope `admin:*`.
ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]';
UPDATE tokens SET scopes = '["admin:*"]' WHERE is_admin = 1;
ALTER TABLE tokens DROP COLUMN is_admin;
-- RFC 3339; NULL never expires
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
-- RFC 3339; set once, never cleared: a revoked secret stays dead
ALTER TABLE tokens ADD COLUMN revoked_at TEXT;
-- the name of the token that created this one (NULL: the first-start admin token)
ALTER TABLE tokens ADD COLUMN created_by TEXT;

-- 1: reading the index (pages, files, API) needs a token with `read` on it.
ALTER TABLE indexes ADD COLUMN private BIGINT NOT NULL DEFAULT 0 CHECK (private IN (0, 1));
