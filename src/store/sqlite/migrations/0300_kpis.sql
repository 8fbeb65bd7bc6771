-- KPI snapshots, rollups, alert rules and alert instances (SPEC §9).
-- Raw snapshots, append-only (the rollups are derived from them in the same transaction).
CREATE TABLE kpi_snapshots (
    org_id      TEXT NOT NULL,
    kpi         TEXT NOT NULL,
    facility_id TEXT NOT NULL,      -- '' when the snapshot names no facility
    observed_at INTEGER NOT NULL,   -- Unix nanoseconds
    value       REAL NOT NULL,
    unit        TEXT
);
-- One row per (org, kpi, facility or '' = org-wide, granularity seconds, bucket start Unix ms).
CREATE TABLE kpi_rollups (
    org_id      TEXT NOT NULL,
    kpi         TEXT NOT NULL,
    facility_id TEXT NOT NULL,
    gran        INTEGER NOT NULL,
    bucket      INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    min         REAL NOT NULL,
    max         REAL NOT NULL,
    sum         REAL NOT NULL,
    last_value  REAL NOT NULL,
    last_at     INTEGER NOT NULL,
    PRIMARY KEY (org_id, kpi, facility_id, gran, bucket)
) WITHOUT ROWID;
-- Known KPIs with their latest value.
CREATE TABLE kpis (
    org_id      TEXT NOT NULL,
    kpi         TEXT NOT NULL,
    unit        TEXT,
    last_value  REAL NOT NULL,
    last_at     INTEGER NOT NULL,
    last_facility_id TEXT,
    snapshots   INTEGER NOT NULL,
    PRIMARY KEY (org_id, kpi)
) WITHOUT ROWID;
CREATE TABLE alert_rules (
    id               TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL,
    kpi              TEXT NOT NULL,
    facility_id      TEXT,           -- NULL = org-wide, 'each' = every facility separately
    granularity      TEXT NOT NULL,
    aggregate        TEXT NOT NULL,
    op               TEXT NOT NULL,
    threshold        REAL NOT NULL,
    clear_threshold  REAL,
    for_buckets      INTEGER NOT NULL,
    severity         TEXT NOT NULL,
    deliver_to_inbox INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    created_context  TEXT NOT NULL,
    updated_at       TEXT,
    updated_context  TEXT
);
CREATE INDEX alert_rules_by_kpi ON alert_rules (org_id, kpi);
-- Evaluation state per (rule, facility): the newest bucket evaluated and the open instance.
CREATE TABLE alert_series (
    rule_id     TEXT NOT NULL,
    facility_id TEXT NOT NULL,      -- '' = org-wide
    last_bucket INTEGER NOT NULL,
    open_alert  TEXT,
    PRIMARY KEY (rule_id, facility_id)
) WITHOUT ROWID;
CREATE TABLE alerts (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    rule_id      TEXT NOT NULL,
    kpi          TEXT NOT NULL,
    facility_id  TEXT,
    state        TEXT NOT NULL,
    value        REAL NOT NULL,
    threshold    REAL NOT NULL,
    bucket_start INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    fired_at     TEXT,
    resolved_at  TEXT,
    history      TEXT NOT NULL
);
CREATE INDEX alerts_by_org ON alerts (org_id, id);
