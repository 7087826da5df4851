-- Engine v3, step 5 (docs/delivery-engine.md, "Step 5"): an event's row holds what its
-- producer wrote and nothing else. The delivery state columns the relay stopped writing in
-- step 4b (`status`, `attempts`, `last_error`, `delivered_at`, `parked` and the lease
-- columns) are dropped, with the indexes and constraints over them; the table keeps four
-- indexes: the primary key, the feed (now also what keeps `seq` unique), the scope index
-- (keyed events only) and the dedupe key.
--
-- What older relays left on those columns moves to the relay's tables first:
--   * a row marked `discarded` is listed in outbox_discarded (unless a replay of it waits);
--   * a row marked `delivered` keeps its history: its failures and last error are counted in
--     outbox_attempts (`attempts` on the row counted the publish that succeeded too);
--   * a row marked `delivered` at or behind its scope's held head (the old engine's replay
--     of a delivered event made it pending again in front of events already delivered; a
--     row closed by hand behind a dead head; a discard that moved the head onto the seq of a
--     row delivered long ago) is listed in outbox_delivered_behind: the walk of its scope
--     passes over it, as step 4b's walk did by its status, and the view says `delivered`.
-- Every other row already stands where the relay's tables say (step 4b).
--
-- Stop every relay first, as for step 4b. The column drops are instant; the two new indexes
-- are built under the table's lock (writers wait: `scripts/time-upgrade` measures how long).

LOCK TABLE outbox_events IN ACCESS EXCLUSIVE MODE;

-- 1. Discarded rows of the old engine.
INSERT INTO outbox_discarded (event_id, discarded_at)
SELECT e.id, COALESCE(a.updated_at, e.created_at)
  FROM outbox_events e
  LEFT JOIN outbox_attempts a ON a.event_id = e.id
 WHERE e.status = 'discarded'
   AND NOT EXISTS (SELECT 1 FROM outbox_replays r WHERE r.event_id = e.id)
ON CONFLICT (event_id) DO NOTHING;

-- 1b. The history of rows delivered by older relays (the view of step 4b showed the greater
-- of the row's `attempts` and the failures counted since, plus the publish that succeeded,
-- and the row's last error when no failure was counted since).
INSERT INTO outbox_attempts AS a (event_id, failures, last_error, updated_at)
SELECT e.id, GREATEST(e.attempts - 1, 0), e.last_error, COALESCE(e.delivered_at, e.created_at)
  FROM outbox_events e
 WHERE e.status = 'delivered'
   AND (e.attempts > 1 OR e.last_error IS NOT NULL)
   AND NOT EXISTS (SELECT 1 FROM outbox_replays r WHERE r.event_id = e.id)
ON CONFLICT (event_id) DO UPDATE
   SET failures = GREATEST(a.failures, EXCLUDED.failures),
       last_error = COALESCE(a.last_error, EXCLUDED.last_error);

-- 2. Delivered rows of the old engine at or behind a held head. (At the head too: a
-- discard moves the head to `seq + 1`, which for events older than step 4a, drawn from one
-- sequence, can be the seq of the scope's next row, delivered long ago.) Nothing else ever
-- adds to this table: since step 4b nothing is delivered behind a held head but by the walk
-- that moves the head past it.
CREATE TABLE IF NOT EXISTS outbox_delivered_behind (
    event_id uuid PRIMARY KEY
);
INSERT INTO outbox_delivered_behind (event_id)
SELECT e.id
  FROM outbox_held h
  JOIN outbox_events e
    ON e.ordering_key IS NOT NULL
   AND outbox_scope(e.tenant_id, e.ordering_key) = h.scope
   AND e.seq >= h.head_seq
   AND e.status = 'delivered'
ON CONFLICT (event_id) DO NOTHING;

-- 3. What read the columns goes: the status views (defined again below; re-run
-- deploy/postgres/grants.sql after this migration), the trigger of rows closed by hand (a
-- row has no status to close any more; a deleted head still frees its scope), the old
-- parking's re-check list and its function, the estimate of pending rows.
DROP VIEW IF EXISTS outbox_leased_events;
DROP VIEW IF EXISTS outbox_event_status;
DROP TRIGGER IF EXISTS outbox_events_closed_held_head ON outbox_events;
DROP FUNCTION IF EXISTS outbox_events_note_moved_head();
DROP TABLE IF EXISTS outbox_key_recheck;
DROP FUNCTION IF EXISTS outbox_estimate_pending();

-- 4. The indexes. `seq` stays unique through the feed index (a seq and its partition go
-- together), so the unique index on `seq` alone goes; the scope index covers keyed events
-- only (a scope's walk and `status`'s counts read it; unkeyed events are found by id).
DROP INDEX IF EXISTS outbox_events_delivered_at;
DROP INDEX IF EXISTS outbox_events_stopped;
CREATE INDEX outbox_events_scope
    ON outbox_events (outbox_scope(tenant_id, ordering_key), seq)
    WHERE ordering_key IS NOT NULL;
DROP INDEX IF EXISTS outbox_events_open_scope_seq;
CREATE UNIQUE INDEX outbox_events_feed_unique ON outbox_events ((seq % 16), seq);
DROP INDEX IF EXISTS outbox_events_feed;
ALTER INDEX outbox_events_feed_unique RENAME TO outbox_events_feed;
ALTER TABLE outbox_events DROP CONSTRAINT IF EXISTS outbox_events_seq_key;

-- 5. The columns (their checks go with them).
ALTER TABLE outbox_events
    DROP COLUMN IF EXISTS status,
    DROP COLUMN IF EXISTS attempts,
    DROP COLUMN IF EXISTS last_error,
    DROP COLUMN IF EXISTS locked_by,
    DROP COLUMN IF EXISTS locked_until,
    DROP COLUMN IF EXISTS delivered_at,
    DROP COLUMN IF EXISTS parked,
    DROP COLUMN IF EXISTS claim_token;

-- 6. Vacuum by the table's own measure. Rows are only ever inserted and, by retention,
-- deleted: the defaults (a fifth of the table dead before a vacuum) let a large outbox
-- carry millions of dead rows through every index scan of the feed, and the inserts'
-- visibility map (what keeps the feed's reads index-only) waits as long.
ALTER TABLE outbox_events SET (autovacuum_vacuum_scale_factor = 0.01,
                               autovacuum_vacuum_threshold = 10000,
                               autovacuum_vacuum_insert_scale_factor = 0.01,
                               autovacuum_vacuum_insert_threshold = 10000,
                               autovacuum_analyze_scale_factor = 0.02);

-- 7. The estimate of the events waiting behind a blocked head (`status`'s blocked keys).
CREATE OR REPLACE FUNCTION outbox_estimate_behind(scope text, head_seq bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE plan jsonb;
BEGIN
    EXECUTE format('EXPLAIN (FORMAT JSON) SELECT 1 FROM outbox_events WHERE ordering_key IS NOT NULL AND outbox_scope(tenant_id, ordering_key) = %L AND seq > %s', scope, head_seq)
       INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::bigint;
END;
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION outbox_estimate_behind(text, bigint) SET search_path = %I, pg_catalog, pg_temp',
                   current_schema());
END;
$$;

-- 8. The insert trigger without the delivery state it used to reset.
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
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION outbox_events_before_insert() SET search_path = %I, pg_catalog, pg_temp',
                   current_schema());
END;
$$;

-- 9. Where each event stands, from the relay's tables alone (the same columns as before):
--   discarded  listed in outbox_discarded (and not replayed since);
--   dead       the head of its held scope, and that scope is dead; or a replay that died;
--   pending    replayed and not yet sent again; at or behind its held scope's head; a gap;
--              or above its partition's frontier;
--   delivered  listed in outbox_delivered_behind (delivered by an older relay behind what is
--              now its scope's held head); anything else.
-- `attempts` counts the failures and, once delivered, the publish that succeeded;
-- `delivered_at` is not kept per event since step 4b (a settle advances a partition, not
-- rows) and is always NULL: `status` shows when each partition last advanced.
CREATE VIEW outbox_event_status AS
SELECT e.id, e.seq, e.tenant_id, e.ordering_key,
       outbox_scope(e.tenant_id, e.ordering_key) AS scope,
       e.event_type, e.category, e.created_at, e.available_at,
       st.status,
       LEAST(COALESCE(a.failures, 0), 2147483646)
           + CASE WHEN st.status = 'delivered' THEN 1 ELSE 0 END AS attempts,
       a.last_error,
       CASE WHEN st.status = 'pending'
            THEN GREATEST(e.available_at,
                          CASE WHEN r.event_id IS NOT NULL THEN r.due_at
                               WHEN h.scope IS NOT NULL AND e.seq = h.head_seq THEN h.due_at
                               ELSE e.available_at END) END AS due_at,
       NULL::timestamptz AS delivered_at,
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
  LEFT JOIN outbox_delivered_behind b ON b.event_id = e.id
  LEFT JOIN outbox_held h
         ON h.scope = COALESCE(outbox_scope(e.tenant_id, e.ordering_key), '#' || e.id::text)
  LEFT JOIN outbox_gaps g ON g.seq = e.seq
  LEFT JOIN outbox_partitions p
         ON p.part = CASE WHEN h.scope IS NOT NULL THEN h.part ELSE (e.seq % 16)::integer END
 CROSS JOIN LATERAL (
       SELECT CASE WHEN r.event_id IS NOT NULL
                   THEN CASE WHEN r.due_at IS NULL THEN 'dead' ELSE 'pending' END
                   WHEN x.event_id IS NOT NULL THEN 'discarded'
                   WHEN b.event_id IS NOT NULL THEN 'delivered'
                   WHEN h.scope IS NOT NULL AND e.seq = h.head_seq AND h.due_at IS NULL THEN 'dead'
                   WHEN h.scope IS NOT NULL AND e.seq >= h.head_seq THEN 'pending'
                   WHEN g.seq IS NOT NULL OR e.seq > COALESCE(p.frontier, -1) THEN 'pending'
                   ELSE 'delivered' END AS status) st;

CREATE VIEW outbox_leased_events AS
SELECT s.id, s.seq, COALESCE(s.scope, '#' || s.id::text) AS lease_key, p.token, p.owner,
       p.relay_id, p.leased_until
  FROM outbox_event_status s
  JOIN outbox_partitions p ON p.token = s.lease_token;
