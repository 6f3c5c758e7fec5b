-- Webhooks: subscriptions, and the queue of their deliveries (shared by every replica;
-- it survives restarts). See src/service/webhooks.rs.
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- the indexes it hears about: `*`, `namespace/*` or `namespace/name`
    pattern TEXT NOT NULL,
    url TEXT NOT NULL,
    -- JSON array of event names, e.g. ["stage-result", "promotion"]
    events TEXT NOT NULL,
    -- the HMAC key deliveries are signed with (kept: signing needs it; never shown again)
    secret TEXT NOT NULL,
    -- the token that made it: it reads the delivery log, and deliveries stop with it
    owner_token_id INTEGER NOT NULL REFERENCES tokens (id),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event TEXT NOT NULL CHECK (event IN ('build-ready', 'build-failed', 'stage-result',
        'promotion', 'promotion-refused', 'yank')),
    index_name TEXT NOT NULL,
    -- the JSON body, fixed when the event happened (a retry sends the same bytes)
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    -- unix milliseconds: when it may be tried (next), and until when a replica holds it
    next_attempt_ms INTEGER NOT NULL,
    claimed_until_ms INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
