-- The delivery engine: per-key order by construction, claims whose cost does not grow with
-- the backlog, claim tokens, and the operator's `discarded` status.
--
-- Per-key order. A writer takes a row lock on its key in `outbox_key_locks` *before* `seq`
-- is drawn and holds it to commit, so writers of one key queue from insert to commit and
-- `seq` order is commit order within a key: when a relay sees an event of a key committed,
-- every earlier `seq` of that key is committed (or rolled back) too.
--
-- Parking. Only the *head* of a key (its first undelivered event) needs to be found by a
-- claim; the events behind it are reached through the key index. An event written while its
-- key already has undelivered events is born `parked` and stays out of the claim's index,
-- so a dead or leased head with a million events behind it costs a claim nothing. When a
-- settle or a discard moves a key's head, the new head is unparked.

ALTER TABLE outbox_events DROP CONSTRAINT IF EXISTS outbox_events_status_check;
ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_status_check
    CHECK (status IN ('pending', 'delivered', 'dead', 'discarded'));

ALTER TABLE outbox_events ADD COLUMN IF NOT EXISTS parked boolean NOT NULL DEFAULT false;
ALTER TABLE outbox_events ADD COLUMN IF NOT EXISTS claim_token uuid NULL;

-- Leases of relays older than this schema carry no token: release them (their rows are
-- published again: at least once, never lost). Stop old relays before migrating.
UPDATE outbox_events SET locked_by = NULL, locked_until = NULL
 WHERE locked_until IS NOT NULL AND claim_token IS NULL;

-- Writers' per-key locks: one row per ordering key, locked from insert to commit.
CREATE TABLE IF NOT EXISTS outbox_key_locks (
    ordering_key text PRIMARY KEY
);
INSERT INTO outbox_key_locks (ordering_key)
SELECT DISTINCT ordering_key FROM outbox_events
 WHERE ordering_key IS NOT NULL AND status IN ('pending', 'dead')
ON CONFLICT DO NOTHING;

-- Keys whose head a settle could not unpark because a writer held the key at that moment;
-- the next claim finishes the job once the writer is gone.
CREATE TABLE IF NOT EXISTS outbox_key_recheck (
    ordering_key text PRIMARY KEY,
    noted_at     timestamptz NOT NULL DEFAULT now()
);

-- Indexes. Every claim-path index is partial, so it holds only the rows the claim can use.
DROP INDEX IF EXISTS outbox_events_pending_seq;
DROP INDEX IF EXISTS outbox_events_undelivered_key_seq;

-- The claim's scan: unparked, unleased pending rows (the heads of keys, and unkeyed rows),
-- due first.
CREATE INDEX IF NOT EXISTS outbox_events_ready
    ON outbox_events (available_at, seq)
    WHERE status = 'pending' AND NOT parked AND claim_token IS NULL;

-- A key's undelivered events in order: the head probe, runs behind a head, writers' check.
CREATE INDEX IF NOT EXISTS outbox_events_open_key_seq
    ON outbox_events (ordering_key, seq)
    WHERE status IN ('pending', 'dead');

-- Leased rows, by lease deadline: expired leases are reaped, in-flight rows counted.
CREATE INDEX IF NOT EXISTS outbox_events_leased
    ON outbox_events (locked_until)
    WHERE claim_token IS NOT NULL;

-- Pending rows in seq order: backlog figures and the oldest pending event.
CREATE INDEX IF NOT EXISTS outbox_events_pending
    ON outbox_events (seq)
    WHERE status = 'pending';

-- Dead and discarded rows: blocked keys, operator commands.
CREATE INDEX IF NOT EXISTS outbox_events_stopped
    ON outbox_events (seq)
    WHERE status IN ('dead', 'discarded');

-- Events already behind an undelivered event of their key are parked.
UPDATE outbox_events e SET parked = true
 WHERE e.status = 'pending' AND e.ordering_key IS NOT NULL
   AND EXISTS (SELECT 1 FROM outbox_events b
                WHERE b.ordering_key = e.ordering_key AND b.seq < e.seq
                  AND b.status IN ('pending', 'dead'));

-- The longest ordering key and dedupe key, in bytes (index entries and AMQP headers stay
-- well within their limits).
CREATE OR REPLACE FUNCTION outbox_max_key_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE AS 'SELECT 512';

-- Every inserted row: defaults and catalog checks (rows written by plain SQL from any
-- language get the same treatment as the library's), then the per-key lock, the seq drawn
-- under it, and the parked flag.
CREATE OR REPLACE FUNCTION outbox_events_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    entry record;
    long_header text;
BEGIN
    SELECT c.payload_schema_ref, c.category INTO entry
      FROM system_event_catalog c
     WHERE c.event_type = NEW.event_type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'outbox: unknown event type "%": it is not in system_event_catalog (run outbox-relay migrate)',
            left(NEW.event_type, 80)
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NEW.schema_ref IS NULL THEN
        NEW.schema_ref := entry.payload_schema_ref;
    ELSIF NEW.schema_ref <> entry.payload_schema_ref THEN
        RAISE EXCEPTION 'outbox: schema_ref "%" does not match the catalog''s "%" for event type %',
            left(NEW.schema_ref, 80), entry.payload_schema_ref, NEW.event_type
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.category IS NULL THEN
        NEW.category := entry.category;
    ELSIF NEW.category <> entry.category THEN
        RAISE EXCEPTION 'outbox: category "%" does not match the catalog''s "%" for event type %',
            left(NEW.category, 80), entry.category, NEW.event_type
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.dedupe_key IS NULL THEN
        NEW.dedupe_key := NEW.id::text;
    ELSIF octet_length(NEW.dedupe_key) > outbox_max_key_bytes() THEN
        RAISE EXCEPTION 'outbox: dedupe_key is % bytes, over the % allowed',
            octet_length(NEW.dedupe_key), outbox_max_key_bytes()
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.headers <> '{}'::jsonb AND jsonb_typeof(NEW.headers) = 'object' THEN
        SELECT k INTO long_header FROM jsonb_object_keys(NEW.headers) AS k
         WHERE octet_length(k) > 255 OR k = '' LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'outbox: header name "%..." is empty or over 255 bytes (AMQP short string)',
                left(long_header, 40)
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    -- Clients (chrono, JavaScript, ...) represent far fewer years than Postgres does.
    IF NOT (NEW.occurred_at BETWEEN '0001-01-01Z' AND '9999-12-31Z'
            AND NEW.available_at BETWEEN '0001-01-01Z' AND '9999-12-31Z'
            AND NEW.created_at BETWEEN '0001-01-01Z' AND '9999-12-31Z') THEN
        RAISE EXCEPTION 'outbox: occurred_at, available_at and created_at must lie within the years 1 to 9999'
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.claim_token := NULL;
    NEW.locked_by := NULL;
    NEW.locked_until := NULL;
    NEW.parked := false;
    IF NEW.ordering_key IS NOT NULL THEN
        IF octet_length(NEW.ordering_key) > outbox_max_key_bytes() THEN
            RAISE EXCEPTION 'outbox: ordering_key is % bytes, over the % allowed',
                octet_length(NEW.ordering_key), outbox_max_key_bytes()
                USING ERRCODE = 'check_violation';
        END IF;
        -- Lock the key (held to commit), then draw seq: same-key writers queue here. (The
        -- identity default drew a value before this trigger ran; it is simply skipped.)
        INSERT INTO outbox_key_locks AS l (ordering_key) VALUES (NEW.ordering_key)
            ON CONFLICT (ordering_key) DO UPDATE SET ordering_key = l.ordering_key WHERE false;
        NEW.seq := nextval('outbox_events_seq_seq');
        -- Under READ COMMITTED this statement sees every writer that held the key before us
        -- and every settle that moved its head. Other levels read an older snapshot: their
        -- rows stay unparked and the claim parks them if needed.
        IF current_setting('transaction_isolation') = 'read committed' THEN
            NEW.parked := EXISTS (
                SELECT 1 FROM outbox_events b
                 WHERE b.ordering_key = NEW.ordering_key AND b.status IN ('pending', 'dead'));
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS outbox_events_fill_defaults ON outbox_events;
DROP FUNCTION IF EXISTS outbox_events_fill_defaults();
DROP TRIGGER IF EXISTS outbox_events_before_insert ON outbox_events;
CREATE TRIGGER outbox_events_before_insert
    BEFORE INSERT ON outbox_events
    FOR EACH ROW
    EXECUTE FUNCTION outbox_events_before_insert();

-- An event's place in its key's order never changes.
CREATE OR REPLACE FUNCTION outbox_events_immutable_order() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'outbox: seq and ordering_key of an event cannot change (event %)', OLD.id
        USING ERRCODE = 'check_violation';
END;
$$;

DROP TRIGGER IF EXISTS outbox_events_immutable_order ON outbox_events;
CREATE TRIGGER outbox_events_immutable_order
    BEFORE UPDATE OF seq, ordering_key ON outbox_events
    FOR EACH ROW
    WHEN (OLD.seq IS DISTINCT FROM NEW.seq OR OLD.ordering_key IS DISTINCT FROM NEW.ordering_key)
    EXECUTE FUNCTION outbox_events_immutable_order();

-- Operators' discards, next to their replays.
ALTER TABLE outbox_replay_audit ADD COLUMN IF NOT EXISTS action text NOT NULL DEFAULT 'replay';

-- Planner estimates for the metrics gauges, where an exact count would read every row
-- (a million pending rows take far longer to count than a scrape should).
CREATE OR REPLACE FUNCTION outbox_estimate_pending() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE plan jsonb;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM outbox_events WHERE status = ''pending''' INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::bigint;
END;
$$;

CREATE OR REPLACE FUNCTION outbox_estimate_behind(key text, head_seq bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE plan jsonb;
BEGIN
    EXECUTE format('EXPLAIN (FORMAT JSON) SELECT 1 FROM outbox_events WHERE ordering_key = %L AND seq > %s AND status IN (''pending'', ''dead'')', key, head_seq)
       INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::bigint;
END;
$$;
