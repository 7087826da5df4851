-- Engine v3, step 4b (docs/delivery-engine.md, "Step 4b"): the relay reads the outbox as 16
-- partitioned feeds and keeps what it knows in its own tables; an event's row is never
-- written after its insert.
--
--   outbox_partitions  one row per partition: its frontier (every seq of the partition up
--                      to it has been read, or is a gap) and the lease of the relay loop
--                      working it (token, owner session, relay, deadline);
--   outbox_gaps        seqs missing below a frontier (a writer that was still open, or rolled
--                      back), each with the id of the transaction that noted it (the settle:
--                      every writer that could still fill the gap has a smaller one);
--   outbox_held        scopes whose head cannot go now: backing off after a failure, dead,
--                      scheduled for later, or released; nothing of the scope from the head on
--                      goes out but by a walk of the scope from its head;
--   outbox_replays     events an operator replayed after they were delivered or discarded:
--                      each goes out once more, on its own.
--
-- Stop every relay first (a relay older than this migration would deliver by rewriting rows
-- that nothing reads any more: a check fences it off).

LOCK TABLE outbox_events IN EXCLUSIVE MODE;

CREATE TABLE IF NOT EXISTS outbox_partitions (
    part         integer PRIMARY KEY CHECK (part BETWEEN 0 AND 15),
    frontier     bigint NOT NULL,
    token        uuid NULL,
    owner        integer NULL,
    relay_id     text NULL,
    leased_until timestamptz NULL,
    -- Events the lease's claim took (in flight until its settle).
    claimed      integer NOT NULL DEFAULT 0,
    advanced_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE IF NOT EXISTS outbox_gaps (
    seq        bigint PRIMARY KEY,
    part       integer NOT NULL,
    noted_xid  xid8 NOT NULL,
    noted_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS outbox_gaps_part ON outbox_gaps (part);

CREATE TABLE IF NOT EXISTS outbox_held (
    -- `outbox_scope(tenant_id, ordering_key)`, or `#<event id>` for an unkeyed event.
    scope      text PRIMARY KEY,
    part       integer NOT NULL,
    head_seq   bigint NOT NULL,
    -- When the head may go again; NULL while it is dead.
    due_at     timestamptz NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS outbox_held_due ON outbox_held (part, due_at) WHERE due_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS outbox_replays (
    event_id     uuid PRIMARY KEY,
    part         integer NOT NULL,
    due_at       timestamptz NULL,
    requested_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS outbox_replays_due ON outbox_replays (part, due_at) WHERE due_at IS NOT NULL;

ALTER TABLE outbox_held SET (autovacuum_vacuum_scale_factor = 0,
                             autovacuum_vacuum_threshold = 1000,
                             autovacuum_vacuum_cost_delay = 0);
ALTER TABLE outbox_partitions SET (autovacuum_vacuum_scale_factor = 0,
                                   autovacuum_vacuum_threshold = 200,
                                   autovacuum_vacuum_cost_delay = 0, fillfactor = 50);

-- The claim's ready index of the scopes' old parking: unused by the feed, and every new row
-- would enter it (rows stay `pending` on the row now).
DROP INDEX IF EXISTS outbox_events_ready;
-- Likewise the index of pending rows (the old gauges' count): every row is `pending` now.
DROP INDEX IF EXISTS outbox_events_pending;

-- The feed: a partition's events in seq order.
CREATE INDEX IF NOT EXISTS outbox_events_feed ON outbox_events ((seq % 16), seq);

-- Every event written so far lies at or below every frontier: each frontier is set to the
-- first value of its partition's progression at or above the highest seq handed out in any
-- partition (events older than step 4a, whose seqs came from one sequence, included), and
-- each partition's sequence continues after its frontier. What is undelivered of it is held
-- below (next statement) and goes out by a walk; the feed starts afresh after the
-- frontiers. (The table's lock keeps writers from drawing meanwhile.)
DO $$
DECLARE
    p integer;
    drawn bigint;
    highest bigint;
    n bigint;
BEGIN
    SELECT COALESCE(max(seq), 0) INTO highest FROM outbox_events;
    FOR p IN 0..15 LOOP
        EXECUTE format('SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM %I',
                       'outbox_events_seq_p' || p)
           INTO drawn;
        highest := GREATEST(highest, drawn * 16 + p);
    END LOOP;
    FOR p IN 0..15 LOOP
        n := (GREATEST(highest - p, 0) + 15) / 16;
        INSERT INTO outbox_partitions (part, frontier) VALUES (p, n * 16 + p)
        ON CONFLICT (part) DO NOTHING;
        PERFORM setval(format('%I', 'outbox_events_seq_p' || p)::regclass,
                       GREATEST(n, 1), n > 0);
    END LOOP;
END;
$$;

-- Every scope with an undelivered event is held at its first one; an unkeyed undelivered
-- event is held on its own. Due as the relay would have sent it: dead, at its next try, or
-- when the producer let it go.
INSERT INTO outbox_held (scope, part, head_seq, due_at)
SELECT DISTINCT ON (s.scope) s.scope,
       CASE WHEN e.ordering_key IS NULL THEN e.seq % 16
            ELSE (hashtextextended(s.scope, 0) & 15)::integer END,
       e.seq,
       CASE WHEN a.dead_at IS NOT NULL THEN NULL
            ELSE GREATEST(e.available_at, COALESCE(a.next_attempt_at, e.available_at)) END
  FROM outbox_events e
 CROSS JOIN LATERAL (SELECT COALESCE(outbox_scope(e.tenant_id, e.ordering_key),
                                     '#' || e.id::text) AS scope) s
  LEFT JOIN outbox_attempts a ON a.event_id = e.id
 WHERE e.status = 'pending'
 ORDER BY s.scope, e.seq
ON CONFLICT (scope) DO NOTHING;

-- The scope leases of older relays end here (they were stopped for the migration): a
-- claim leases a partition now. What is in flight, for people and tools: the undelivered
-- events of each leased partition.
-- (The status view read the old leases: it is dropped here and defined again below.
-- Re-run deploy/postgres/grants.sql after this migration: it grants the views again.)
DROP VIEW IF EXISTS outbox_event_status;
DROP VIEW IF EXISTS outbox_leased_events;
DROP TABLE IF EXISTS outbox_leases;

-- An older relay left running would settle by writing `delivered` on a row, which nothing
-- reads any more: its settle fails on this check instead, loudly (SQLSTATE 23514). (NOT
-- VALID: the rows delivered before are kept as they are, and never written again.)
ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_feed_only
    CHECK (status <> 'delivered') NOT VALID;

-- A held head deleted or closed outside the relay (an application cancelling a scheduled
-- event, an operator deleting a dead one by hand) makes its scope due at once: the next walk
-- of the scope does not find the row and moves on to the next event. (A held scope records
-- a seq, not an event: nothing else needs noting, and the re-check list of the scopes' old
-- parking is no longer used.) It runs as the outbox's owner: a service allowed to delete
-- its scheduled events needs no privilege on the relay's tables.
DROP TRIGGER IF EXISTS outbox_events_deleted_open ON outbox_events;
DROP TRIGGER IF EXISTS outbox_events_closed_outside ON outbox_events;

CREATE OR REPLACE FUNCTION outbox_events_free_held_head() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    -- A replay of a row that is gone has nothing to send.
    IF TG_OP = 'DELETE' THEN
        DELETE FROM outbox_replays WHERE event_id = OLD.id;
    END IF;
    UPDATE outbox_held
       SET due_at = clock_timestamp(), updated_at = clock_timestamp()
     WHERE scope = COALESCE(outbox_scope(OLD.tenant_id, OLD.ordering_key), '#' || OLD.id::text)
       AND head_seq = OLD.seq;
    RETURN NULL;
END;
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION outbox_events_free_held_head() SET search_path = %I, pg_catalog, pg_temp',
                   current_schema());
END;
$$;

CREATE TRIGGER outbox_events_deleted_held_head
    AFTER DELETE ON outbox_events
    FOR EACH ROW
    WHEN (current_setting('outbox.actor', true) IS DISTINCT FROM 'relay')
    EXECUTE FUNCTION outbox_events_free_held_head();

CREATE TRIGGER outbox_events_closed_held_head
    AFTER UPDATE OF status ON outbox_events
    FOR EACH ROW
    WHEN (OLD.status = 'pending' AND NEW.status <> 'pending'
          AND current_setting('outbox.actor', true) IS DISTINCT FROM 'relay')
    EXECUTE FUNCTION outbox_events_free_held_head();

-- Writers draw seqs only through the insert trigger: a SECURITY DEFINER function draws
-- from the partition's sequence, and writer roles lose their USAGE on the sequences (a
-- producer that could call nextval() could burn values by the million, each a gap for the
-- relay to note and forget).
CREATE OR REPLACE FUNCTION outbox_draw_seq(part integer) RETURNS bigint
LANGUAGE sql SECURITY DEFINER AS $$
    SELECT nextval(('outbox_events_seq_p' || part)::regclass) * 16 + part
$$;
DO $$
DECLARE
    p integer;
    g record;
BEGIN
    EXECUTE format('ALTER FUNCTION outbox_draw_seq(integer) SET search_path = %I, pg_catalog, pg_temp',
                   current_schema());
    FOR p IN 0..15 LOOP
        FOR g IN
            SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                 ELSE quote_ident(r.rolname) END AS grantee
              FROM pg_class c
             CROSS JOIN LATERAL aclexplode(c.relacl) AS a
              LEFT JOIN pg_roles r ON r.oid = a.grantee
             WHERE c.oid = format('%I', 'outbox_events_seq_p' || p)::regclass
               AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('REVOKE ALL ON SEQUENCE %I FROM %s', 'outbox_events_seq_p' || p,
                           g.grantee);
        END LOOP;
    END LOOP;
END;
$$;

-- The insert trigger without the parked probe: nothing reads `parked` any more (the feed
-- and the held scopes replace it), so writers no longer walk their scope's index.
CREATE OR REPLACE FUNCTION outbox_events_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    entry record;
    long_header text;
    part integer;
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
    ELSIF octet_length(NEW.dedupe_key) > 512 THEN
        RAISE EXCEPTION 'outbox: dedupe_key is % bytes, over the 512 allowed',
            octet_length(NEW.dedupe_key)
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.headers <> '{}'::jsonb AND jsonb_typeof(NEW.headers) = 'object' THEN
        SELECT k INTO long_header FROM jsonb_object_keys(NEW.headers) AS k
         WHERE octet_length(k) > 255 OR k = '' LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'outbox: a header name is empty or over 255 bytes (AMQP short string): "%"',
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
    -- Delivery state belongs to the relay: whatever the INSERT said, a new event is pending,
    -- never attempted, unleased.
    NEW.status := 'pending';
    NEW.attempts := 0;
    NEW.last_error := NULL;
    NEW.delivered_at := NULL;
    NEW.claim_token := NULL;
    NEW.locked_by := NULL;
    NEW.locked_until := NULL;
    NEW.parked := false;
    IF NEW.ordering_key IS NOT NULL THEN
        IF octet_length(NEW.ordering_key) > 512 THEN
            RAISE EXCEPTION 'outbox: ordering_key is % bytes, over the 512 allowed',
                octet_length(NEW.ordering_key)
                USING ERRCODE = 'check_violation';
        END IF;
        -- A scope always lands in the same partition (the low four bits of its hash).
        part := hashtextextended(outbox_scope(NEW.tenant_id, NEW.ordering_key), 0) & 15;
        -- Lock the scope (held to commit; it assigns the transaction's id), then draw seq:
        -- same-scope writers queue here, so within a scope seq order is commit order.
        INSERT INTO outbox_key_locks AS l (ordering_key)
            VALUES (outbox_scope(NEW.tenant_id, NEW.ordering_key))
            ON CONFLICT (ordering_key) DO UPDATE SET ordering_key = l.ordering_key WHERE false;
        NEW.seq := outbox_draw_seq(part);
    ELSE
        part := floor(random() * 16);
        -- The transaction's id before seq: a reader that sees this seq missing can tell when
        -- this writer has ended.
        PERFORM pg_current_xact_id();
        NEW.seq := outbox_draw_seq(part);
    END IF;
    RETURN NEW;
END;
$$;

-- CREATE OR REPLACE reset the function's settings: bind it to this schema again.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION outbox_events_before_insert() SET search_path = %I, pg_catalog, pg_temp',
                   current_schema());
END;
$$;


-- Where each event stands, from the relay's tables (the same columns as before):
--   discarded  listed in outbox_discarded (and not replayed since);
--   dead       the head of its held scope, and that scope is dead;
--   pending    replayed and not yet sent again; at or behind its held scope's head; a gap;
--              or above its partition's frontier;
--   delivered  anything else (and the rows delivered before this step).
-- `parked` says the event waits behind a held head (or is one); the lease columns name the
-- relay loop working its partition.
CREATE VIEW outbox_event_status AS
SELECT e.id, e.seq, e.tenant_id, e.ordering_key,
       outbox_scope(e.tenant_id, e.ordering_key) AS scope,
       e.event_type, e.category, e.created_at, e.available_at,
       st.status,
       GREATEST(e.attempts, LEAST(COALESCE(a.failures, 0), 2147483646)
                            + CASE WHEN st.status = 'delivered' THEN 1 ELSE 0 END) AS attempts,
       COALESCE(a.last_error, e.last_error) AS last_error,
       CASE WHEN st.status = 'pending'
            THEN GREATEST(e.available_at,
                          CASE WHEN r.event_id IS NOT NULL THEN r.due_at
                               WHEN h.scope IS NOT NULL AND e.seq = h.head_seq THEN h.due_at
                               ELSE e.available_at END) END AS due_at,
       CASE WHEN st.status = 'delivered' THEN e.delivered_at END AS delivered_at,
       CASE WHEN st.status IN ('dead', 'discarded') THEN a.dead_at END AS dead_at,
       x.discarded_at,
       (h.scope IS NOT NULL AND e.seq >= h.head_seq) AS parked,
       CASE WHEN st.status = 'pending' AND p.leased_until IS NOT NULL THEN p.relay_id END AS leased_by,
       CASE WHEN st.status = 'pending' THEN p.leased_until END AS leased_until,
       CASE WHEN st.status = 'pending' AND p.leased_until IS NOT NULL THEN p.token END AS lease_token
  FROM outbox_events e
  LEFT JOIN outbox_attempts a ON a.event_id = e.id
  LEFT JOIN outbox_discarded x ON x.event_id = e.id
  LEFT JOIN outbox_replays r ON r.event_id = e.id
  LEFT JOIN outbox_held h
         ON h.scope = COALESCE(outbox_scope(e.tenant_id, e.ordering_key), '#' || e.id::text)
  LEFT JOIN outbox_gaps g ON g.seq = e.seq
  LEFT JOIN outbox_partitions p
         ON p.part = CASE WHEN h.scope IS NOT NULL THEN h.part ELSE (e.seq % 16)::integer END
 CROSS JOIN LATERAL (
       SELECT CASE WHEN r.event_id IS NOT NULL
                   THEN CASE WHEN r.due_at IS NULL THEN 'dead' ELSE 'pending' END
                   WHEN x.event_id IS NOT NULL OR e.status = 'discarded' THEN 'discarded'
                   WHEN e.status = 'delivered' THEN 'delivered'
                   WHEN h.scope IS NOT NULL AND e.seq = h.head_seq AND h.due_at IS NULL THEN 'dead'
                   WHEN h.scope IS NOT NULL AND e.seq > h.head_seq THEN 'pending'
                   WHEN h.scope IS NOT NULL AND e.seq = h.head_seq THEN 'pending'
                   WHEN g.seq IS NOT NULL OR e.seq > COALESCE(p.frontier, -1) THEN 'pending'
                   ELSE 'delivered' END AS status) st;

CREATE VIEW outbox_leased_events AS
SELECT s.id, s.seq, COALESCE(s.scope, '#' || s.id::text) AS lease_key, p.token, p.owner,
       p.relay_id, p.leased_until
  FROM outbox_event_status s
  JOIN outbox_partitions p ON p.token = s.lease_token;
