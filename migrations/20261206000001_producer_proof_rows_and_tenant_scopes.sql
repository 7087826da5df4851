-- Engine v3, step 1 (docs/delivery-engine.md, "Engine v3"): what a producer writes can no
-- longer forge delivery state, order is per tenant, every function is bound to its own
-- schema, and nothing done to a row outside the relay strands the events behind it.
--
-- 1. Delivery state is the relay's. The insert trigger sets every state column itself
--    (`status`, `attempts`, `last_error`, `delivered_at`, the lease, `parked`) and draws
--    `seq` for every row, whatever the INSERT said: a plain-SQL row written with
--    `status = 'delivered'` or `attempts = 2147483647` is an ordinary pending event. The
--    writer role of deploy/postgres/grants.sql may name only the columns that describe an
--    event.
-- 2. `seq` is drawn once per event, by the trigger, under the key lock. It was an identity
--    column whose default drew a value the trigger then replaced for keyed rows (two draws
--    per event), and `OVERRIDING SYSTEM VALUE` let an INSERT choose it.
-- 3. Functions and triggers resolve names in the schema they were created in
--    (`SET search_path`), never through the caller's: two outboxes in two schemas of one
--    database stay independent whatever a writer's `search_path` is.
-- 4. A pending or dead row deleted, or taken out of `pending`/`dead`, by anything but the
--    relay (an application cancelling a scheduled event, an operator deleting a dead row by
--    hand) notes its key for the relay's re-check, which makes the next event the key's
--    head: nothing waits forever behind a row that is gone.
-- 5. The ordering scope is (tenant, ordering key): one tenant's dead or slow head never
--    holds another tenant's events on the same key. Events without a tenant share one
--    global scope per key, as before. `outbox_scope(tenant_id, ordering_key)` names a scope
--    as text (`<tenant uuid>/<key>`, or `-/<key>` without a tenant: a uuid's text is never
--    `-`, so no two scopes share a name); the writers' key locks and the re-check list hold
--    scope names in their `ordering_key` column (kept under that name, so services still on
--    an older library, which lock bare keys first, keep working: their extra lock rows only
--    serialise their own batches and are purged as idle).

-- 5. Scopes.
CREATE OR REPLACE FUNCTION outbox_scope(tenant uuid, ordering_key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ordering_key IS NULL THEN NULL
                WHEN tenant IS NULL THEN '-/' OPERATOR(pg_catalog.||) ordering_key
                ELSE CAST(tenant AS pg_catalog.text) OPERATOR(pg_catalog.||) '/'
                     OPERATOR(pg_catalog.||) ordering_key END
$$;

-- A scope's undelivered events in order: the head probe, runs behind a head, writers' check.
DROP INDEX IF EXISTS outbox_events_open_key_seq;
CREATE INDEX IF NOT EXISTS outbox_events_open_scope_seq
    ON outbox_events (outbox_scope(tenant_id, ordering_key), seq)
    WHERE status IN ('pending', 'dead');

-- Writers' locks and the re-check list by scope. Every writer waits for this migration
-- (it holds the table), so no lock row is in use.
DELETE FROM outbox_key_locks;
INSERT INTO outbox_key_locks (ordering_key)
SELECT DISTINCT outbox_scope(tenant_id, ordering_key) FROM outbox_events
 WHERE ordering_key IS NOT NULL AND status IN ('pending', 'dead')
ON CONFLICT DO NOTHING;
DELETE FROM outbox_key_recheck;

-- Events parked behind another tenant's head are heads of their own scope now.
UPDATE outbox_events e SET parked = false
  FROM (SELECT DISTINCT ON (outbox_scope(tenant_id, ordering_key)) id
          FROM outbox_events
         WHERE status IN ('pending', 'dead') AND ordering_key IS NOT NULL
         ORDER BY outbox_scope(tenant_id, ordering_key), seq) AS head
 WHERE e.id = head.id AND e.parked;

-- The planner's estimate of the events waiting behind a scope's head.
DROP FUNCTION IF EXISTS outbox_estimate_behind(text, bigint);
CREATE FUNCTION outbox_estimate_behind(scope text, head_seq bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE plan jsonb;
BEGIN
    EXECUTE format('EXPLAIN (FORMAT JSON) SELECT 1 FROM outbox_events WHERE outbox_scope(tenant_id, ordering_key) = %L AND seq > %s AND status IN (''pending'', ''dead'')', scope, head_seq)
       INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::bigint;
END;
$$;

-- 2. seq: a plain column filled by the trigger, from a sequence of the same name as before
-- (so `TRUNCATE ... RESTART IDENTITY` and existing grants keep working), continuing after
-- the highest value handed out.
-- Whoever could use the old sequence (the writer role of grants.sql) can use the new one.
DO $$
DECLARE
    next_value bigint;
    grants text[];
    g text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute
                WHERE attrelid = 'outbox_events'::regclass AND attname = 'seq'
                  AND attidentity <> '') THEN
        SELECT GREATEST(
                   (SELECT last_value FROM outbox_events_seq_seq),
                   (SELECT COALESCE(max(seq), 0) FROM outbox_events))
          INTO next_value;
        SELECT COALESCE(array_agg(format('GRANT %s ON SEQUENCE outbox_events_seq_seq TO %s',
                                         a.privilege_type,
                                         CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                              ELSE quote_ident(r.rolname) END)), '{}')
          INTO grants
          FROM pg_class c
          CROSS JOIN LATERAL aclexplode(c.relacl) AS a
          LEFT JOIN pg_roles r ON r.oid = a.grantee
         WHERE c.oid = 'outbox_events_seq_seq'::regclass AND a.grantee <> c.relowner;
        ALTER TABLE outbox_events ALTER COLUMN seq DROP IDENTITY;
        CREATE SEQUENCE outbox_events_seq_seq AS bigint OWNED BY outbox_events.seq;
        PERFORM setval('outbox_events_seq_seq', GREATEST(next_value, 1), next_value > 0);
        FOREACH g IN ARRAY grants LOOP
            EXECUTE g;
        END LOOP;
    END IF;
END;
$$;

-- 1. The insert trigger: catalog and limit checks as before, every state column set here,
-- the key lock, then seq drawn under it, then the parked flag.
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
        -- Lock the scope (held to commit), then draw seq: same-scope writers queue here.
        INSERT INTO outbox_key_locks AS l (ordering_key)
            VALUES (outbox_scope(NEW.tenant_id, NEW.ordering_key))
            ON CONFLICT (ordering_key) DO UPDATE SET ordering_key = l.ordering_key WHERE false;
        NEW.seq := nextval('outbox_events_seq_seq');
        -- Under READ COMMITTED this statement sees every writer that held the scope before
        -- us and every settle that moved its head. Other levels read an older snapshot:
        -- their rows stay unparked and the claim parks them if needed.
        IF current_setting('transaction_isolation') = 'read committed' THEN
            NEW.parked := EXISTS (
                SELECT 1 FROM outbox_events b
                 WHERE outbox_scope(b.tenant_id, b.ordering_key)
                       = outbox_scope(NEW.tenant_id, NEW.ordering_key)
                   AND b.status IN ('pending', 'dead'));
        END IF;
    ELSE
        NEW.seq := nextval('outbox_events_seq_seq');
    END IF;
    RETURN NEW;
END;
$$;

-- 4. Rows changed outside the relay. The relay marks its own transactions
-- (`outbox.actor = relay`, transaction-local), so its settles, purges and operator commands
-- pay nothing here: they move heads themselves.
-- It runs as the outbox's owner: a service allowed to delete its scheduled events needs no
-- privilege on the relay's re-check list (the function only ever notes the changed row's
-- scope; its search_path is bound below).
CREATE OR REPLACE FUNCTION outbox_events_note_moved_head() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO outbox_key_recheck (ordering_key)
        VALUES (outbox_scope(OLD.tenant_id, OLD.ordering_key))
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

-- An event's place in its scope's order never changes: the tenant is part of the scope now.
CREATE OR REPLACE FUNCTION outbox_events_immutable_order() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'outbox: seq, tenant_id and ordering_key of an event cannot change (event %)', OLD.id
        USING ERRCODE = 'check_violation';
END;
$$;

DROP TRIGGER IF EXISTS outbox_events_immutable_order ON outbox_events;
CREATE TRIGGER outbox_events_immutable_order
    BEFORE UPDATE OF seq, tenant_id, ordering_key ON outbox_events
    FOR EACH ROW
    WHEN (OLD.seq IS DISTINCT FROM NEW.seq OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
          OR OLD.ordering_key IS DISTINCT FROM NEW.ordering_key)
    EXECUTE FUNCTION outbox_events_immutable_order();

DROP TRIGGER IF EXISTS outbox_events_deleted_open ON outbox_events;
CREATE TRIGGER outbox_events_deleted_open
    AFTER DELETE ON outbox_events
    FOR EACH ROW
    WHEN (OLD.status IN ('pending', 'dead') AND OLD.ordering_key IS NOT NULL
          AND current_setting('outbox.actor', true) IS DISTINCT FROM 'relay')
    EXECUTE FUNCTION outbox_events_note_moved_head();

DROP TRIGGER IF EXISTS outbox_events_closed_outside ON outbox_events;
CREATE TRIGGER outbox_events_closed_outside
    AFTER UPDATE OF status ON outbox_events
    FOR EACH ROW
    WHEN (OLD.status IN ('pending', 'dead') AND NEW.status NOT IN ('pending', 'dead')
          AND OLD.ordering_key IS NOT NULL
          AND current_setting('outbox.actor', true) IS DISTINCT FROM 'relay')
    EXECUTE FUNCTION outbox_events_note_moved_head();

-- 3. Every function of the outbox runs with this schema first (then pg_catalog's built-ins,
-- and temporary objects last, so a caller's temporary table cannot stand in for ours).
-- `outbox_scope` (in an index expression) and `outbox_uuid_v7` (the id's default), which the
-- planner must be able to inline, name only qualified built-ins instead: a function with a
-- `SET` clause is called, not inlined, and as the default of every plain-SQL insert that
-- cost writers about 15 % of their transactions per second (pgbench, 8 clients).
CREATE OR REPLACE FUNCTION outbox_uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT CAST(pg_catalog.encode(
        pg_catalog.set_bit(pg_catalog.set_bit(
            pg_catalog.overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()),
                    pg_catalog.substring(pg_catalog.int8send(CAST(pg_catalog.floor(
                        pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000)
                        AS bigint)), 3),
                    1, 6),
            52, 1), 53, 1),
        'hex') AS uuid)
$$;
ALTER FUNCTION outbox_uuid_v7() RESET search_path;
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_proc p
         WHERE p.pronamespace = (SELECT n.oid FROM pg_namespace n
                                  WHERE n.nspname = current_schema())
           AND p.proname IN ('outbox_events_before_insert', 'outbox_events_notify',
                             'outbox_events_immutable_order', 'outbox_events_note_moved_head',
                             'outbox_estimate_pending', 'outbox_estimate_behind',
                             'outbox_max_key_bytes', 'outbox_wakeup_mode',
                             'outbox_set_wakeup_mode', 'outbox_replay_audit_session_role')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_catalog, pg_temp',
                       f, current_schema());
    END LOOP;
END;
$$;
