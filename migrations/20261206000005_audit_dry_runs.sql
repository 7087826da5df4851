-- Dry runs are audited too (`replay --dry-run`, `discard --dry-run`): who looked at which
-- events, and when, next to who changed them. `dry_run` tells them apart; rows older than
-- this migration are all changes. `outbox-relay audit` lists the table.
ALTER TABLE outbox_replay_audit ADD COLUMN IF NOT EXISTS dry_run boolean NOT NULL DEFAULT false;
