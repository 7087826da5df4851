-- Switching the wake-up mode without stalling writers.
--
-- `ALTER TABLE ... ENABLE/DISABLE TRIGGER` waits for writers in flight and, while it waits,
-- holds every new writer (and relay) back. A short lock timeout bounds that stall to 200 ms
-- per attempt (`outbox-relay wakeup` retries for a while); asking for the mode the database
-- already has takes no lock at all (deploy scripts may set it on every run).
CREATE OR REPLACE FUNCTION outbox_set_wakeup_mode(mode text) RETURNS text
LANGUAGE plpgsql
SET lock_timeout = '200ms'
AS $$
BEGIN
    IF mode IS NULL OR mode NOT IN ('notify', 'poll') THEN
        RAISE EXCEPTION 'outbox: unknown wake-up mode %: use ''notify'' or ''poll''',
            COALESCE(quote_literal(left(mode, 40)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF outbox_wakeup_mode() = mode THEN
        RETURN mode;
    END IF;
    IF mode = 'notify' THEN
        ALTER TABLE outbox_events ENABLE TRIGGER outbox_events_notify;
    ELSE
        ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_notify;
    END IF;
    RETURN outbox_wakeup_mode();
END;
$$;
