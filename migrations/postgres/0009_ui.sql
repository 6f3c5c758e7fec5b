-- The web UI: the build queue (leases in progress, server-wide) and a project's
-- promotion history are read by every home and release page.
CREATE INDEX builds_in_progress ON builds (index_id) WHERE state = 'building';
CREATE INDEX promotions_by_project ON promotions (project, version);
