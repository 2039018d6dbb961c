-- feedback-service schema ({{backend}}). Times are microseconds since the Unix
-- epoch (UTC), money is integer minor units, flags are 0/1: the same
-- representation as the {{other_backend}} schema, so one store serves both.

-- One row per contract with feedback activity. Writers bump `version` first,
-- which serialises mid-contract submits and end-of-contract reveals of one
-- contract (the row lock), so eligibility and reveal decisions are race-free.
CREATE TABLE contract_guards (
    contract_id TEXT PRIMARY KEY,
    version     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE mid_feedback (
    id                   TEXT PRIMARY KEY,
    contract_id          TEXT NOT NULL,
    client_id            TEXT NOT NULL,
    freelancer_id        TEXT NOT NULL,
    rating               BIGINT NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment              TEXT NOT NULL,
    cohort               TEXT NOT NULL,
    bonus_currency       TEXT,
    bonus_minor          BIGINT CHECK (bonus_minor IS NULL OR bonus_minor > 0),
    -- NONE, PENDING (committed with the feedback, not yet paid) or PAID.
    bonus_state          TEXT NOT NULL CHECK (bonus_state IN ('NONE', 'PENDING', 'PAID')),
    bonus_payment_id     TEXT,
    fulfilled_request_id TEXT,
    created_at           BIGINT NOT NULL
);
CREATE INDEX mid_feedback_contract_idx ON mid_feedback (contract_id, created_at);
CREATE INDEX mid_feedback_freelancer_idx ON mid_feedback (freelancer_id, contract_id);
CREATE INDEX mid_feedback_pending_bonus_idx ON mid_feedback (created_at) WHERE bonus_state = 'PENDING';

CREATE TABLE feedback_requests (
    id            TEXT PRIMARY KEY,
    contract_id   TEXT NOT NULL,
    freelancer_id TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('PENDING', 'FULFILLED', 'EXPIRED')),
    created_at    BIGINT NOT NULL,
    expire_at     BIGINT NOT NULL,
    feedback_id   TEXT
);
CREATE UNIQUE INDEX feedback_requests_one_pending ON feedback_requests (contract_id) WHERE state = 'PENDING';
CREATE INDEX feedback_requests_contract_idx ON feedback_requests (contract_id, id);
CREATE INDEX feedback_requests_expiry_idx ON feedback_requests (expire_at) WHERE state = 'PENDING';

CREATE TABLE end_feedback (
    id                      TEXT PRIMARY KEY,
    contract_id             TEXT NOT NULL,
    direction               TEXT NOT NULL CHECK (direction IN ('CLIENT_TO_FREELANCER', 'FREELANCER_TO_CLIENT')),
    author_id               TEXT NOT NULL,
    recipient_id            TEXT NOT NULL,
    client_id               TEXT NOT NULL,
    freelancer_id           TEXT NOT NULL,
    score_1                 BIGINT NOT NULL CHECK (score_1 BETWEEN 1 AND 5),
    score_2                 BIGINT NOT NULL CHECK (score_2 BETWEEN 1 AND 5),
    score_3                 BIGINT NOT NULL CHECK (score_3 BETWEEN 1 AND 5),
    score_4                 BIGINT NOT NULL CHECK (score_4 BETWEEN 1 AND 5),
    score_5                 BIGINT NOT NULL CHECK (score_5 BETWEEN 1 AND 5),
    score_6                 BIGINT NOT NULL CHECK (score_6 BETWEEN 1 AND 5),
    comment                 TEXT NOT NULL,
    -- Private part (client to freelancer only): never shown to the freelancer.
    reason_for_ending       BIGINT,
    likelihood_to_recommend BIGINT CHECK (likelihood_to_recommend IS NULL OR likelihood_to_recommend BETWEEN 0 AND 10),
    contract_end_at         BIGINT NOT NULL,
    window_close_at         BIGINT NOT NULL,
    revealed_at             BIGINT,
    created_at              BIGINT NOT NULL,
    CONSTRAINT end_feedback_once_per_side UNIQUE (contract_id, direction)
);
CREATE INDEX end_feedback_freelancer_idx ON end_feedback (freelancer_id, contract_id);
CREATE INDEX end_feedback_unrevealed_idx ON end_feedback (window_close_at) WHERE revealed_at IS NULL;

CREATE TABLE replies (
    id          TEXT PRIMARY KEY,
    feedback_id TEXT NOT NULL REFERENCES end_feedback (id),
    author_id   TEXT NOT NULL,
    text        TEXT NOT NULL,
    public      BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    CONSTRAINT replies_once_per_feedback UNIQUE (feedback_id)
);

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
    seq        BIGINT UNIQUE
);
CREATE INDEX outbox_unsequenced_idx ON outbox (id) WHERE seq IS NULL;

CREATE TABLE outbox_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL
);
INSERT INTO outbox_head (id, last_seq) VALUES (1, 0);
