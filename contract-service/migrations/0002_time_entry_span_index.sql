-- LogTime's overlap check and its weekly sum read only this index (no table
-- lookups); it also serves every (contract_id, start_at) range the old one did.
CREATE INDEX time_entries_contract_span_idx ON time_entries (contract_id, start_at, end_at);
DROP INDEX time_entries_contract_start_idx;
