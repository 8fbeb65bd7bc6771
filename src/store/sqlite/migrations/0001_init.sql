-- Events: the append-only log. `seq` is the commit order (AUTOINCREMENT keeps it from ever
-- being reused, even after retention purges the newest rows).
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL,
    org_id        TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    occurred_at   INTEGER NOT NULL,
    event_type    TEXT    NOT NULL,
    service       TEXT    NOT NULL,
    channel_id    TEXT,
    facility_id   TEXT,
    payload_hash  TEXT    NOT NULL,
    ingested_at   INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    context       TEXT    NOT NULL
);
CREATE UNIQUE INDEX events_dedupe ON events (org_id, event_id, occurred_at);
CREATE INDEX events_org_seq ON events (org_id, seq);
CREATE INDEX events_org_service_seq ON events (org_id, service, seq);
CREATE INDEX events_org_facility_seq ON events (org_id, facility_id, seq) WHERE facility_id IS NOT NULL;

CREATE TABLE api_keys (
    id               TEXT PRIMARY KEY,
    secret_hash      TEXT NOT NULL,
    role             TEXT NOT NULL,
    org_id           TEXT,
    services         TEXT NOT NULL,
    orgs             TEXT NOT NULL,
    label            TEXT,
    created_at       TEXT NOT NULL,
    created_context  TEXT,
    revoked_at       TEXT,
    revoked_context  TEXT
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
