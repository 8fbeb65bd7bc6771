-- The whole schema of the PostgreSQL backend, mirroring the SQLite one (same tables, same
-- column names and meanings). Times are RFC 3339 text or Unix integers exactly as there.
-- Text columns use the "C" collation: byte order, as on SQLite, whatever the database locale
-- (keyset pages order by ids and names).

-- Events: the append-only log. `seq` comes from `events_seq`, assigned while the appending
-- transaction holds its org's advisory lock (see ARCHITECTURE.md, "CDC on PostgreSQL").
CREATE SEQUENCE events_seq AS BIGINT;
CREATE TABLE events (
    seq           BIGINT  PRIMARY KEY,
    id            TEXT COLLATE "C"    NOT NULL,
    org_id        TEXT COLLATE "C"    NOT NULL,
    event_id      TEXT COLLATE "C"    NOT NULL,
    occurred_at   BIGINT  NOT NULL,
    event_type    TEXT COLLATE "C"    NOT NULL,
    service       TEXT COLLATE "C"    NOT NULL,
    channel_id    TEXT COLLATE "C",
    facility_id   TEXT COLLATE "C",
    payload_hash  TEXT COLLATE "C"    NOT NULL,
    ingested_at   BIGINT  NOT NULL,
    body          TEXT COLLATE "C"    NOT NULL,
    context       TEXT COLLATE "C"    NOT NULL
);
CREATE UNIQUE INDEX events_dedupe ON events (org_id, event_id, occurred_at);
CREATE INDEX events_org_seq ON events (org_id, seq);
CREATE INDEX events_org_service_seq ON events (org_id, service, seq);
CREATE INDEX events_org_facility_seq ON events (org_id, facility_id, seq) WHERE facility_id IS NOT NULL;

CREATE TABLE api_keys (
    id               TEXT COLLATE "C" PRIMARY KEY,
    secret_hash      TEXT COLLATE "C" NOT NULL,
    role             TEXT COLLATE "C" NOT NULL,
    org_id           TEXT COLLATE "C",
    services         TEXT COLLATE "C" NOT NULL,
    orgs             TEXT COLLATE "C" NOT NULL,
    label            TEXT COLLATE "C",
    created_at       TEXT COLLATE "C" NOT NULL,
    created_context  TEXT COLLATE "C",
    revoked_at       TEXT COLLATE "C",
    revoked_context  TEXT COLLATE "C"
);

CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);

-- Export and import jobs (see the SQLite schema for the meaning of the columns).
CREATE TABLE jobs (
    id               TEXT COLLATE "C" PRIMARY KEY,
    org_id           TEXT COLLATE "C"    NOT NULL,
    kind             TEXT COLLATE "C"    NOT NULL,
    status           TEXT COLLATE "C"    NOT NULL,
    spec             TEXT COLLATE "C"    NOT NULL,
    progress         TEXT COLLATE "C"    NOT NULL,
    checkpoint       TEXT COLLATE "C"    NOT NULL,
    result           TEXT COLLATE "C"    NOT NULL,
    context          TEXT COLLATE "C"    NOT NULL,
    idempotency_key  TEXT COLLATE "C",
    created_at       TEXT COLLATE "C"    NOT NULL,
    started_at       TEXT COLLATE "C",
    finished_at      TEXT COLLATE "C",
    claimed_by       TEXT COLLATE "C",
    lease_until      BIGINT
);
CREATE INDEX jobs_org_kind_id ON jobs (org_id, kind, id);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (org_id, kind, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_runnable ON jobs (status, id);

CREATE TABLE job_errors (
    job_id    TEXT COLLATE "C"    NOT NULL,
    org_id    TEXT COLLATE "C"    NOT NULL,
    line      BIGINT  NOT NULL,
    event_id  TEXT COLLATE "C",
    code      TEXT COLLATE "C"    NOT NULL,
    message   TEXT COLLATE "C"    NOT NULL,
    PRIMARY KEY (job_id, line)
);

-- Job files (export parts, import uploads) live in the database so every node reaches them.
-- A file is a run of chunks; `start_at` is the byte offset of a chunk in its file.
CREATE TABLE job_files (
    org_id    TEXT COLLATE "C"   NOT NULL,
    job_id    TEXT COLLATE "C"   NOT NULL,
    name      TEXT COLLATE "C"   NOT NULL,
    start_at  BIGINT NOT NULL,
    data      BYTEA  NOT NULL,
    PRIMARY KEY (org_id, job_id, name, start_at)
);

CREATE TABLE webhooks (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    org_id                TEXT COLLATE "C"    NOT NULL,
    url                   TEXT COLLATE "C"    NOT NULL,
    description           TEXT COLLATE "C",
    filters               TEXT COLLATE "C"    NOT NULL,
    mode                  TEXT COLLATE "C"    NOT NULL,
    max_in_flight         BIGINT  NOT NULL,
    pause_after           BIGINT,
    pause_min_secs        BIGINT,
    status                TEXT COLLATE "C"    NOT NULL,
    secret_sealed         BYTEA   NOT NULL,
    secret_last4          TEXT COLLATE "C"    NOT NULL,
    consecutive_failures  BIGINT  NOT NULL DEFAULT 0,
    first_failure_at      BIGINT,
    total_failures        BIGINT  NOT NULL DEFAULT 0,
    paused_at             TEXT COLLATE "C",
    pause_reason          TEXT COLLATE "C",
    last_success_at       TEXT COLLATE "C",
    last_failure_at       TEXT COLLATE "C",
    created_at            TEXT COLLATE "C"    NOT NULL,
    created_context       TEXT COLLATE "C"    NOT NULL,
    updated_context       TEXT COLLATE "C"
);
CREATE INDEX webhooks_org_id ON webhooks (org_id, id);
CREATE INDEX webhooks_active ON webhooks (org_id) WHERE status = 'active';

CREATE TABLE deliveries (
    id                TEXT COLLATE "C" PRIMARY KEY,
    org_id            TEXT COLLATE "C"    NOT NULL,
    webhook_id        TEXT COLLATE "C"    NOT NULL,
    event_id          TEXT COLLATE "C"    NOT NULL,
    event_type        TEXT COLLATE "C"    NOT NULL,
    seq               BIGINT  NOT NULL,
    body              TEXT COLLATE "C",
    status            TEXT COLLATE "C"    NOT NULL,
    attempt_count     BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT  NOT NULL,
    lease_until       BIGINT,
    claimed_by        TEXT COLLATE "C",
    lease_token       BIGINT  NOT NULL DEFAULT 0,
    last_status_code  BIGINT,
    ingested_at       BIGINT  NOT NULL,
    created_at        TEXT COLLATE "C"    NOT NULL,
    updated_at        TEXT COLLATE "C"    NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_head ON deliveries (webhook_id, seq) WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, id);
CREATE INDEX deliveries_held ON deliveries (webhook_id) WHERE status = 'held';
-- Leases in force, counted against a webhook's max_in_flight across nodes at every claim.
CREATE INDEX deliveries_leased ON deliveries (webhook_id, lease_until) WHERE lease_until IS NOT NULL;

CREATE TABLE delivery_attempts (
    delivery_id            TEXT COLLATE "C"    NOT NULL,
    attempt                BIGINT  NOT NULL,
    started_at             TEXT COLLATE "C"    NOT NULL,
    duration_ms            BIGINT  NOT NULL,
    status_code            BIGINT,
    error                  TEXT COLLATE "C",
    response_body_excerpt  TEXT COLLATE "C",
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE inbox (
    id             TEXT COLLATE "C" PRIMARY KEY,
    org_id         TEXT COLLATE "C" NOT NULL,
    kind           TEXT COLLATE "C" NOT NULL,
    severity       TEXT COLLATE "C" NOT NULL,
    title          TEXT COLLATE "C" NOT NULL,
    body           TEXT COLLATE "C" NOT NULL,
    ref_type       TEXT COLLATE "C" NOT NULL,
    ref_id         TEXT COLLATE "C" NOT NULL,
    created_at     TEXT COLLATE "C" NOT NULL,
    acked_at       TEXT COLLATE "C",
    acked_context  TEXT COLLATE "C"
);
CREATE INDEX inbox_org ON inbox (org_id, id);

CREATE TABLE kpi_snapshots (
    org_id      TEXT COLLATE "C" NOT NULL,
    kpi         TEXT COLLATE "C" NOT NULL,
    facility_id TEXT COLLATE "C" NOT NULL,
    observed_at BIGINT NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    unit        TEXT COLLATE "C"
);
CREATE TABLE kpi_rollups (
    org_id      TEXT COLLATE "C" NOT NULL,
    kpi         TEXT COLLATE "C" NOT NULL,
    facility_id TEXT COLLATE "C" NOT NULL,
    gran        BIGINT NOT NULL,
    bucket      BIGINT NOT NULL,
    count       BIGINT NOT NULL,
    min         DOUBLE PRECISION NOT NULL,
    max         DOUBLE PRECISION NOT NULL,
    sum         DOUBLE PRECISION NOT NULL,
    last_value  DOUBLE PRECISION NOT NULL,
    last_at     BIGINT NOT NULL,
    PRIMARY KEY (org_id, kpi, facility_id, gran, bucket)
);
CREATE TABLE kpis (
    org_id      TEXT COLLATE "C" NOT NULL,
    kpi         TEXT COLLATE "C" NOT NULL,
    unit        TEXT COLLATE "C",
    last_value  DOUBLE PRECISION NOT NULL,
    last_at     BIGINT NOT NULL,
    last_facility_id TEXT COLLATE "C",
    snapshots   BIGINT NOT NULL,
    PRIMARY KEY (org_id, kpi)
);
CREATE TABLE alert_rules (
    id               TEXT COLLATE "C" PRIMARY KEY,
    org_id           TEXT COLLATE "C" NOT NULL,
    kpi              TEXT COLLATE "C" NOT NULL,
    facility_id      TEXT COLLATE "C",
    granularity      TEXT COLLATE "C" NOT NULL,
    aggregate        TEXT COLLATE "C" NOT NULL,
    op               TEXT COLLATE "C" NOT NULL,
    threshold        DOUBLE PRECISION NOT NULL,
    clear_threshold  DOUBLE PRECISION,
    for_buckets      BIGINT NOT NULL,
    severity         TEXT COLLATE "C" NOT NULL,
    deliver_to_inbox BOOLEAN NOT NULL,
    created_at       TEXT COLLATE "C" NOT NULL,
    created_context  TEXT COLLATE "C" NOT NULL,
    updated_at       TEXT COLLATE "C",
    updated_context  TEXT COLLATE "C"
);
CREATE INDEX alert_rules_by_kpi ON alert_rules (org_id, kpi);
CREATE TABLE alert_series (
    rule_id     TEXT COLLATE "C" NOT NULL,
    facility_id TEXT COLLATE "C" NOT NULL,
    last_bucket BIGINT NOT NULL,
    open_alert  TEXT COLLATE "C",
    PRIMARY KEY (rule_id, facility_id)
);
CREATE TABLE alerts (
    id           TEXT COLLATE "C" PRIMARY KEY,
    org_id       TEXT COLLATE "C" NOT NULL,
    rule_id      TEXT COLLATE "C" NOT NULL,
    kpi          TEXT COLLATE "C" NOT NULL,
    facility_id  TEXT COLLATE "C",
    state        TEXT COLLATE "C" NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    threshold    DOUBLE PRECISION NOT NULL,
    bucket_start BIGINT NOT NULL,
    started_at   TEXT COLLATE "C" NOT NULL,
    fired_at     TEXT COLLATE "C",
    resolved_at  TEXT COLLATE "C",
    history      TEXT COLLATE "C" NOT NULL
);
CREATE INDEX alerts_by_org ON alerts (org_id, id);
