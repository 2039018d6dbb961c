-- Disputes get their whole lifecycle (OPEN, ESCALATED, RESOLVED, WITHDRAWN),
-- what is disputed, the freelancer's response deadline and the resolution;
-- hourly invoices name the billing week they pay; refunds made by a
-- dispute's resolution name it (at most one per payment and dispute).
-- [sqlite]
-- SQLite cannot change a CHECK constraint: the disputes table is rebuilt.
-- [end]
-- Disputes filed before this migration dispute the whole week (their minutes
-- are unknown here: 0) and get the default five days to be answered.

-- [postgres]
ALTER TABLE disputes DROP CONSTRAINT disputes_state_check;
ALTER TABLE disputes ADD CONSTRAINT disputes_state_check
    CHECK (state IN ('OPEN', 'ESCALATED', 'RESOLVED', 'WITHDRAWN'));
ALTER TABLE disputes
    ADD COLUMN whole_week            SMALLINT NOT NULL DEFAULT 1,
    ADD COLUMN disputed_minutes      BIGINT NOT NULL DEFAULT 0 CHECK (disputed_minutes >= 0),
    ADD COLUMN disputed_amount_minor BIGINT NOT NULL DEFAULT 0 CHECK (disputed_amount_minor >= 0),
    ADD COLUMN respond_by            BIGINT,
    ADD COLUMN decline_reason        TEXT NOT NULL DEFAULT '',
    ADD COLUMN escalation_cause      TEXT CHECK (escalation_cause IN ('DECLINED', 'NO_RESPONSE')),
    ADD COLUMN escalated_at          BIGINT,
    ADD COLUMN resolved_by           TEXT CHECK (resolved_by IN ('FREELANCER', 'SUPPORT')),
    ADD COLUMN accepted_minutes      BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN refund_amount_minor   BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN refunded_minor        BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN adjustment_minor      BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN resolution_note       TEXT NOT NULL DEFAULT '',
    ADD COLUMN resolved_at           BIGINT,
    ADD COLUMN withdrawn_at          BIGINT,
    ADD COLUMN updated_at            BIGINT;
UPDATE disputes SET respond_by = created_at + 432000000000, updated_at = created_at;
ALTER TABLE disputes ALTER COLUMN respond_by SET NOT NULL, ALTER COLUMN updated_at SET NOT NULL;
ALTER TABLE disputes
    ADD CONSTRAINT disputes_refund_within_disputed CHECK (
        refund_amount_minor >= 0 AND refund_amount_minor <= disputed_amount_minor
        AND refunded_minor + adjustment_minor <= refund_amount_minor),
    ADD CONSTRAINT disputes_resolved_has_time CHECK ((state = 'RESOLVED') = (resolved_at IS NOT NULL));
DROP INDEX disputes_one_open_per_week;
-- [end]
-- [sqlite]
CREATE TABLE disputes_v3 (
    id                    TEXT PRIMARY KEY,
    contract_id           TEXT NOT NULL REFERENCES contracts (id),
    week_start            BIGINT NOT NULL,
    reason                TEXT NOT NULL,
    state                 TEXT NOT NULL CHECK (state IN ('OPEN', 'ESCALATED', 'RESOLVED', 'WITHDRAWN')),
    created_at            BIGINT NOT NULL,
    whole_week            INTEGER NOT NULL DEFAULT 1,
    disputed_minutes      BIGINT NOT NULL DEFAULT 0 CHECK (disputed_minutes >= 0),
    disputed_amount_minor BIGINT NOT NULL DEFAULT 0 CHECK (disputed_amount_minor >= 0),
    respond_by            BIGINT NOT NULL,
    decline_reason        TEXT NOT NULL DEFAULT '',
    escalation_cause      TEXT CHECK (escalation_cause IN ('DECLINED', 'NO_RESPONSE')),
    escalated_at          BIGINT,
    resolved_by           TEXT CHECK (resolved_by IN ('FREELANCER', 'SUPPORT')),
    accepted_minutes      BIGINT NOT NULL DEFAULT 0,
    refund_amount_minor   BIGINT NOT NULL DEFAULT 0,
    refunded_minor        BIGINT NOT NULL DEFAULT 0,
    adjustment_minor      BIGINT NOT NULL DEFAULT 0,
    resolution_note       TEXT NOT NULL DEFAULT '',
    resolved_at           BIGINT,
    withdrawn_at          BIGINT,
    updated_at            BIGINT NOT NULL,
    CONSTRAINT disputes_refund_within_disputed CHECK (
        refund_amount_minor >= 0 AND refund_amount_minor <= disputed_amount_minor
        AND refunded_minor + adjustment_minor <= refund_amount_minor),
    CONSTRAINT disputes_resolved_has_time CHECK ((state = 'RESOLVED') = (resolved_at IS NOT NULL))
);
INSERT INTO disputes_v3 (id, contract_id, week_start, reason, state, created_at, respond_by, updated_at)
    SELECT id, contract_id, week_start, reason, state, created_at, created_at + 432000000000, created_at
    FROM disputes;
DROP TABLE disputes;
ALTER TABLE disputes_v3 RENAME TO disputes;
-- [end]
-- One dispute per contract and week that is not withdrawn.
CREATE UNIQUE INDEX disputes_one_active_per_week ON disputes (contract_id, week_start)
    WHERE state IN ('OPEN', 'ESCALATED', 'RESOLVED');
CREATE INDEX disputes_contract_idx ON disputes (contract_id, id);
-- The escalation sweep: open disputes by deadline.
CREATE INDEX disputes_open_respond_by_idx ON disputes (respond_by) WHERE state = 'OPEN';

ALTER TABLE payments ADD COLUMN billing_week_start BIGINT;
CREATE INDEX payments_billing_week_idx ON payments (contract_id, billing_week_start)
    WHERE billing_week_start IS NOT NULL;

ALTER TABLE refunds ADD COLUMN dispute_id TEXT REFERENCES disputes (id);
CREATE UNIQUE INDEX refunds_one_per_dispute_payment ON refunds (dispute_id, payment_id)
    WHERE dispute_id IS NOT NULL;
