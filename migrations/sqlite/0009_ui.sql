-- The web UI: the build queue (leases in progress, server-wide) and a project's
-- promotion history are read by every home and release page.
CREATE INDEX builds_in_progress ON builds (index_id) WHERE state = 'building';
CREATE INDEX promotions_by_project ON promotions (project, version);

-- Failed builds are events (the events page and feeds show them). SQLite cannot alter a
-- CHECK constraint: the table is rebuilt with its rows and ids.
CREATE TABLE events_v9 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('promotion', 'refusal', 'yank', 'unyank',
        'index-created', 'index-changed', 'index-deleted', 'token-created', 'token-revoked',
        'build-failed')),
    index_name TEXT,
    project TEXT,
    version TEXT,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    -- JSON: what happened, in the words the API shows
    detail TEXT NOT NULL
);
INSERT INTO events_v9 (id, kind, index_name, project, version, actor, at, detail)
SELECT id, kind, index_name, project, version, actor, at, detail FROM events;
DROP TABLE events;
ALTER TABLE events_v9 RENAME TO events;
CREATE INDEX events_by_index ON events (index_name, id);
