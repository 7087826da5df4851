-- Wake-up modes: how relays learn that events were written.
--
-- 'notify': the statement-level trigger `outbox_events_notify` sends `NOTIFY outbox_events`
--           from every inserting transaction. Relays wake at once, but a transaction that
--           notified holds a database-wide lock from its commit record until the
--           notification is queued, so notifying commits cannot be flushed together: with
--           many concurrent writers this costs them a large share of their throughput.
-- 'poll':   the trigger is disabled; writers pay nothing, and relays find new events by
--           polling (a cheap index-only probe).
--
-- The mode is the trigger's enabled state, so it is the same for every session and every
-- language, and switching it needs no restart: `outbox-relay wakeup poll|notify`.

-- The current mode: 'notify' while the trigger fires for ordinary sessions, 'poll' otherwise
-- (disabled, replica-only, or absent).
CREATE OR REPLACE FUNCTION outbox_wakeup_mode() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(
        (SELECT CASE WHEN t.tgenabled IN ('O', 'A') THEN 'notify' ELSE 'poll' END
           FROM pg_trigger t
          WHERE t.tgrelid = 'outbox_events'::regclass
            AND t.tgname = 'outbox_events_notify'),
        'poll')
$$;

-- Switches the mode and returns the new one. `ALTER TABLE ... ENABLE/DISABLE TRIGGER` waits
-- for writers in flight and holds new ones back while it waits, so it gives up after 5 s
-- (lock_timeout) rather than stall every writer behind a long transaction: retry then.
CREATE OR REPLACE FUNCTION outbox_set_wakeup_mode(mode text) RETURNS text
LANGUAGE plpgsql
SET lock_timeout = '5s'
AS $$
BEGIN
    IF mode IS NULL OR mode NOT IN ('notify', 'poll') THEN
        RAISE EXCEPTION 'outbox: unknown wake-up mode %: use ''notify'' or ''poll''',
            COALESCE(quote_literal(left(mode, 40)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF mode = 'notify' THEN
        ALTER TABLE outbox_events ENABLE TRIGGER outbox_events_notify;
    ELSE
        ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_notify;
    END IF;
    RETURN outbox_wakeup_mode();
END;
$$;

-- Plain-SQL rows get a time-ordered id (a UUIDv7, as the library writes) instead of a random
-- one: their primary-key and dedupe-key index entries then land at the right edge of those
-- indexes instead of on a random leaf of a large index (a page read, and after every
-- checkpoint a full-page image in the WAL, per insert).
--
-- A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, the version, then random bits.
CREATE OR REPLACE FUNCTION outbox_uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

ALTER TABLE outbox_events ALTER COLUMN id SET DEFAULT outbox_uuid_v7();

-- The default wake-up mode: poll. NOTIFY divides the commit rate of one-event transactions
-- by 1.5-2.5 at 8 connections and by 1.6-3.9 at 32 (docs/benchmarks.md); relays poll
-- adaptively instead (a few milliseconds apart while events flow).
-- `outbox-relay wakeup notify` turns the notifications back on.
ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_notify;
