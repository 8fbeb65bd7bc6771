-- Webhooks, their delivery queue with per-attempt history, and the operator inbox.
CREATE TABLE webhooks (
    id                    TEXT PRIMARY KEY,
    org_id                TEXT    NOT NULL,
    url                   TEXT    NOT NULL,
    description           TEXT,
    filters               TEXT    NOT NULL,
    mode                  TEXT    NOT NULL,
    max_in_flight         INTEGER NOT NULL,
    pause_after           INTEGER,
    pause_min_secs        INTEGER,
    status                TEXT    NOT NULL,
    secret_sealed         BLOB    NOT NULL,
    secret_last4          TEXT    NOT NULL,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    first_failure_at      INTEGER,
    total_failures        INTEGER NOT NULL DEFAULT 0,
    paused_at             TEXT,
    pause_reason          TEXT,
    last_success_at       TEXT,
    last_failure_at       TEXT,
    created_at            TEXT    NOT NULL,
    created_context       TEXT    NOT NULL,
    updated_context       TEXT
);
CREATE INDEX webhooks_org_id ON webhooks (org_id, id);
CREATE INDEX webhooks_active ON webhooks (org_id) WHERE status = 'active';

-- One row per (event, webhook) fan-out, replay or test ping. `body` is set only for deliveries
-- whose body is not a stored event (test pings); otherwise the event's stored body is sent.
CREATE TABLE deliveries (
    id                TEXT PRIMARY KEY,
    org_id            TEXT    NOT NULL,
    webhook_id        TEXT    NOT NULL,
    event_id          TEXT    NOT NULL,
    event_type        TEXT    NOT NULL,
    seq               INTEGER NOT NULL,
    body              TEXT,
    status            TEXT    NOT NULL,
    attempt_count     INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    lease_until       INTEGER,
    claimed_by        TEXT,
    lease_token       INTEGER NOT NULL DEFAULT 0,
    last_status_code  INTEGER,
    ingested_at       INTEGER NOT NULL,
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_head ON deliveries (webhook_id, seq) WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, id);
CREATE INDEX deliveries_held ON deliveries (webhook_id) WHERE status = 'held';

CREATE TABLE delivery_attempts (
    delivery_id            TEXT    NOT NULL,
    attempt                INTEGER NOT NULL,
    started_at             TEXT    NOT NULL,
    duration_ms            INTEGER NOT NULL,
    status_code            INTEGER,
    error                  TEXT,
    response_body_excerpt  TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE inbox (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL,
    kind           TEXT NOT NULL,
    severity       TEXT NOT NULL,
    title          TEXT NOT NULL,
    body           TEXT NOT NULL,
    ref_type       TEXT NOT NULL,
    ref_id         TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    acked_at       TEXT,
    acked_context  TEXT
);
CREATE INDEX inbox_org ON inbox (org_id, id);
