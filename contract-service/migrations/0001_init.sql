-- contract-service schema ({{backend}}). Times are microseconds since the Unix
-- epoch (UTC), money is integer minor units, flags are 0/1: the same
-- representation as the {{other_backend}} schema, so one store serves both.

CREATE TABLE contracts (
    id                   TEXT PRIMARY KEY,
    client_id            TEXT NOT NULL,
    freelancer_id        TEXT NOT NULL,
    agency_id            TEXT,
    title                TEXT NOT NULL,
    contract_type        TEXT NOT NULL CHECK (contract_type IN ('HOURLY', 'FIXED_PRICE')),
    currency             TEXT NOT NULL,
    hourly_rate_minor    BIGINT NOT NULL CHECK (hourly_rate_minor >= 0),
    weekly_limit_minutes BIGINT NOT NULL CHECK (weekly_limit_minutes >= 0),
    allow_manual_time    {{small_int}} NOT NULL,
    state                TEXT NOT NULL CHECK (state IN ('ACTIVE', 'ENDED')),
    start_at             BIGINT NOT NULL,
    end_at               BIGINT,
    ended_by             TEXT,
    end_reason           TEXT NOT NULL DEFAULT '',
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    last_paid_at         BIGINT,
    net_paid_minor       BIGINT NOT NULL DEFAULT 0,
    diary_locked_at      BIGINT,
    -- Bumped by every diary write: the row lock that serialises diary writes
    -- against each other and against EndContract.
    diary_version        BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT contracts_ended_means_locked CHECK ((state = 'ENDED') = (diary_locked_at IS NOT NULL))
);
CREATE INDEX contracts_client_idx ON contracts (client_id, id);
CREATE INDEX contracts_freelancer_idx ON contracts (freelancer_id, id);
CREATE INDEX contracts_agency_idx ON contracts (agency_id, id) WHERE agency_id IS NOT NULL;

CREATE TABLE time_entries (
    id          TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL REFERENCES contracts (id),
    start_at    BIGINT NOT NULL,
    end_at      BIGINT NOT NULL,
    manual      {{small_int}} NOT NULL,
    memo        TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    CHECK (end_at > start_at)
);
CREATE INDEX time_entries_contract_start_idx ON time_entries (contract_id, start_at);

CREATE TABLE payments (
    id             TEXT PRIMARY KEY,
    contract_id    TEXT NOT NULL REFERENCES contracts (id),
    kind           TEXT NOT NULL CHECK (kind IN ('HOURLY_INVOICE', 'FIXED_PRICE', 'BONUS')),
    currency       TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
    refunded_minor BIGINT NOT NULL DEFAULT 0,
    paid_at        BIGINT NOT NULL,
    memo           TEXT NOT NULL DEFAULT '',
    created_at     BIGINT NOT NULL,
    CONSTRAINT payments_refund_within_amount CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor)
);
CREATE INDEX payments_contract_idx ON payments (contract_id, id);

CREATE TABLE refunds (
    id           TEXT PRIMARY KEY,
    payment_id   TEXT NOT NULL REFERENCES payments (id),
    contract_id  TEXT NOT NULL REFERENCES contracts (id),
    currency     TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    reason       TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL
);
CREATE INDEX refunds_payment_idx ON refunds (payment_id);

CREATE TABLE disputes (
    id          TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL REFERENCES contracts (id),
    week_start  BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('OPEN')),
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX disputes_one_open_per_week ON disputes (contract_id, week_start) WHERE state = 'OPEN';

CREATE TABLE idempotency_keys (
    caller      TEXT NOT NULL,
    method      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response    {{bytes}} NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (caller, method, request_id)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

CREATE TABLE outbox (
    id         {{serial_pk}},
    event_id   TEXT NOT NULL UNIQUE,
    subject_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    payload    {{bytes}} NOT NULL,
    created_at BIGINT NOT NULL,
    -- Gap-free commit order, assigned by the relay after commit.
    seq        BIGINT UNIQUE
);
CREATE INDEX outbox_unsequenced_idx ON outbox (id) WHERE seq IS NULL;

CREATE TABLE outbox_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL
);
INSERT INTO outbox_head (id, last_seq) VALUES (1, 0);
