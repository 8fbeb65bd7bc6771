-- Export and import jobs. JSON columns belong to the service layer; the store only knows
-- states, claims and leases. `claimed_by` + `lease_until` let a node take over a dead node's job.
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    org_id           TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    spec             TEXT    NOT NULL,
    progress         TEXT    NOT NULL,
    checkpoint       TEXT    NOT NULL,
    result           TEXT    NOT NULL,
    context          TEXT    NOT NULL,
    idempotency_key  TEXT,
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    claimed_by       TEXT,
    lease_until      INTEGER
);
CREATE INDEX jobs_org_kind_id ON jobs (org_id, kind, id);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (org_id, kind, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_runnable ON jobs (status, id);

-- Rejected import lines (written in the same transaction as the chunk that rejected them).
CREATE TABLE job_errors (
    job_id    TEXT    NOT NULL,
    org_id    TEXT    NOT NULL,
    line      INTEGER NOT NULL,
    event_id  TEXT,
    code      TEXT    NOT NULL,
    message   TEXT    NOT NULL,
    PRIMARY KEY (job_id, line)
) WITHOUT ROWID;
