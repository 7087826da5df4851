-- Engine v3, step 4a (docs/delivery-engine.md, "Engine v3"): the seq of every event says
-- which of 16 partitions it belongs to, and each partition's seqs come from a sequence of
-- their own, so a relay reading one partition knows exactly which seq comes next.
--
-- seq = nextval(outbox_events_seq_p<part>) * 16 + part, where part (0 to 15, `seq % 16`):
--   - for a keyed event, a hash of its ordering scope (`outbox_scope(tenant_id,
--     ordering_key)`): a scope lives in one partition, its seqs rise in its commit order
--     (the scope's lock is still taken before the draw);
--   - for an unkeyed event (a scope of its own), chosen at random: the partitions share
--     unordered work evenly whoever writes it.
-- Within a partition the seqs handed out form the progression part, part + 16, part + 32,
-- ...: a seq missing below one that is visible is a *gap* — a writer still open, or one
-- that rolled back. The trigger assigns the transaction its id before it draws, so a
-- reader that saw a gap can tell when every writer that could hold it has ended (the
-- oldest running transaction is younger than the reader's snapshot): from then on the row
-- is either visible or never will be.
--
-- Nothing reads the partitions yet: the relay's claim is unchanged by this step. The event
-- row gains no column (the partition is `seq % 16`) and no index.

-- Writers wait for this migration: one still drawing from the single sequence while the
-- new ones are set up could draw a seq the new sequences hand out again, or one below
-- them in its scope.
LOCK TABLE outbox_events IN EXCLUSIVE MODE;

DO $$
DECLARE
    next_value bigint;
    grants text[];
    g text;
    p integer;
BEGIN
    -- Every new seq lies above every seq handed out so far, so within a scope the events
    -- written from now on come after the ones written before.
    SELECT GREATEST((SELECT last_value FROM outbox_events_seq_seq),
                    (SELECT COALESCE(max(seq), 0) FROM outbox_events))
      INTO next_value;
    -- Whoever could draw from the old sequence (the writer role of grants.sql) can draw
    -- from the new ones.
    SELECT COALESCE(array_agg(format('GRANT %s ON SEQUENCE %%I TO %s%s',
                                     a.privilege_type,
                                     CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                          ELSE quote_ident(r.rolname) END,
                                     CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION'
                                          ELSE '' END)), '{}')
      INTO grants
      FROM pg_class c
     CROSS JOIN LATERAL aclexplode(c.relacl) AS a
      LEFT JOIN pg_roles r ON r.oid = a.grantee
     WHERE c.oid = 'outbox_events_seq_seq'::regclass AND a.grantee <> c.relowner;
    FOR p IN 0..15 LOOP
        -- CACHE 1 (whatever the server's default): a session that cached values would hand
        -- out seqs out of drawing order, and a scope's order rests on that order.
        EXECUTE format('CREATE SEQUENCE %I AS bigint CACHE 1 OWNED BY outbox_events.seq',
                       'outbox_events_seq_p' || p);
        PERFORM setval(format('%I', 'outbox_events_seq_p' || p)::regclass,
                       next_value / 16 + 1, false);
        FOREACH g IN ARRAY grants LOOP
            EXECUTE format(g, 'outbox_events_seq_p' || p);
        END LOOP;
    END LOOP;
END;
$$;

-- The insert trigger: as before (catalog and limit checks, every state column set here,
-- the scope's lock, the parked flag), but the transaction's id is assigned before seq is
-- drawn, and seq is drawn from the event's partition.
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
        NEW.seq := nextval(('outbox_events_seq_p' || part)::regclass) * 16 + part;
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
        part := floor(random() * 16);
        -- The transaction's id before seq: a reader that sees this seq missing can tell when
        -- this writer has ended.
        PERFORM pg_current_xact_id();
        NEW.seq := nextval(('outbox_events_seq_p' || part)::regclass) * 16 + part;
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

-- The single sequence is no longer drawn from.
DROP SEQUENCE outbox_events_seq_seq;
