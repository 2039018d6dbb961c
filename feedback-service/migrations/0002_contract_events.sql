-- feedback-service follows contract-service's events (WatchEvents): where it
-- is in that stream, the end-of-contract prompts and reminders it made from
-- ContractEnded, and each user's notification preferences.

-- The one cursor: the last contract-service event applied. It advances in
-- the same transaction as the event's effects, and only forwards, so an
-- event is applied at most once whatever the restarts and reconnections.
CREATE TABLE contract_event_cursor (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_sequence BIGINT NOT NULL,
    last_event_id TEXT,
    updated_at    BIGINT NOT NULL
);
INSERT INTO contract_event_cursor (id, last_sequence, last_event_id, updated_at) VALUES (1, 0, NULL, 0);

-- One end-of-contract feedback prompt per contract and party. The reminder
-- is settled once (sent or skipped): `reminder_settled_at` set, with
-- `reminder_sent` saying which.
CREATE TABLE end_prompts (
    contract_id         TEXT NOT NULL,
    direction           TEXT NOT NULL CHECK (direction IN ('CLIENT_TO_FREELANCER', 'FREELANCER_TO_CLIENT')),
    recipient_id        TEXT NOT NULL,
    title               TEXT NOT NULL,
    event_id            TEXT NOT NULL,
    window_close_at     BIGINT NOT NULL,
    remind_at           BIGINT NOT NULL,
    reminder_settled_at BIGINT,
    reminder_sent       BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT NOT NULL,
    PRIMARY KEY (contract_id, direction)
);
CREATE INDEX end_prompts_due_idx ON end_prompts (remind_at) WHERE reminder_settled_at IS NULL;

CREATE TABLE notification_preferences (
    user_id                TEXT PRIMARY KEY,
    end_feedback_reminders BIGINT NOT NULL CHECK (end_feedback_reminders IN (0, 1)),
    updated_at             BIGINT NOT NULL
);
