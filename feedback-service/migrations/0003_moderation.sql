-- Moderation by support: which items are hidden now, and every action ever
-- taken (the audit trail).

CREATE TABLE moderation_state (
    item_id     TEXT PRIMARY KEY,
    item_kind   TEXT NOT NULL CHECK (item_kind IN ('MID_CONTRACT', 'END_CONTRACT', 'REPLY')),
    hidden      BIGINT NOT NULL CHECK (hidden IN (0, 1)),
    updated_at  BIGINT NOT NULL
);
CREATE INDEX moderation_state_hidden_idx ON moderation_state (item_id) WHERE hidden = 1;

CREATE TABLE moderation_actions (
    id          TEXT PRIMARY KEY,
    action      TEXT NOT NULL CHECK (action IN ('HIDE', 'RESTORE')),
    item_id     TEXT NOT NULL,
    item_kind   TEXT NOT NULL,
    contract_id TEXT NOT NULL,
    author_id   TEXT NOT NULL,
    reason      TEXT,
    note        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX moderation_actions_item_idx ON moderation_actions (item_id, id);
