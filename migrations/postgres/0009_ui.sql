-- The web UI: the build queue (leases in progress, server-wide) and a project's
-- promotion history are read by every home and release page.
CREATE INDEX builds_in_progress ON builds (index_id) WHERE state = 'building';
CREATE INDEX promotions_by_project ON promotions (project, version);

-- Failed builds are events (the events page and feeds show them).
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind IN ('promotion', 'refusal',
    'yank', 'unyank', 'index-created', 'index-changed', 'index-deleted', 'token-created',
    'token-revoked', 'build-failed'));
