-- Promotions (the audit trail of files reaching a target index by policy) and events
-- (promotions, refusals, yanks) readable through the API.

CREATE TABLE promotions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    -- canonical version (trailing zeros dropped), so 1.0 and 1.0.0 are one release
    version TEXT NOT NULL,
    source_index_id INTEGER NOT NULL REFERENCES indexes (id),
    target_index_id INTEGER NOT NULL REFERENCES indexes (id),
    policy TEXT NOT NULL,
    promoted_by TEXT NOT NULL,
    promoted_at TEXT NOT NULL,
    -- JSON: the files listed on the target, with their digests
    files TEXT NOT NULL,
    -- JSON: every policy check and the stage results that justified the promotion
    evidence TEXT NOT NULL,
    -- two racing promotions of one release produce one record
    UNIQUE (target_index_id, project, version)
);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('promotion', 'refusal', 'yank', 'unyank')),
    index_name TEXT NOT NULL,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    -- JSON: what happened, in the words the API shows
    detail TEXT NOT NULL
);
CREATE INDEX events_by_index ON events (index_name, id);
