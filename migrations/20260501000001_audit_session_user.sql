-- Who really acted: the replay audit keeps, next to the actor an operator declares
-- (`--actor`, default $USER), the database role of the session that made the change. The
-- trigger sets it, so no client can write another name. Rows older than this migration
-- have none.
ALTER TABLE outbox_replay_audit ADD COLUMN IF NOT EXISTS session_role text NULL;

CREATE OR REPLACE FUNCTION outbox_replay_audit_session_role() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.session_role := session_user;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS outbox_replay_audit_session_role ON outbox_replay_audit;
CREATE TRIGGER outbox_replay_audit_session_role
    BEFORE INSERT OR UPDATE ON outbox_replay_audit
    FOR EACH ROW EXECUTE FUNCTION outbox_replay_audit_session_role();

-- An empty message id would make every id-less message one and the same to the inbox, so
-- all but the first would be skipped. NOT VALID: checked for new rows, without scanning
-- (and locking) a large existing inbox.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'outbox_inbox_ids_not_empty') THEN
        ALTER TABLE outbox_inbox
            ADD CONSTRAINT outbox_inbox_ids_not_empty
            CHECK (message_id <> '' AND consumer <> '') NOT VALID;
    END IF;
END;
$$;
