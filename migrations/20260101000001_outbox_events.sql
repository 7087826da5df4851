-- The transactional outbox: one row per domain event, written in the producer's transaction.

-- The catalog, upserted by `outbox-relay migrate` / `outbox_core::migrate` (and by the SQL
-- export), so rows inserted by plain SQL get their schema ref and category resolved.
CREATE TABLE IF NOT EXISTS system_event_catalog (
    event_type         text PRIMARY KEY,
    name               text NOT NULL,
    description        text NOT NULL,
    category           text NOT NULL,
    payload_schema     jsonb NOT NULL,
    payload_schema_ref text NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS outbox_events (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq          bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id    uuid NULL,
    event_type   text NOT NULL,
    schema_ref   text NOT NULL,
    category     text NOT NULL,
    ordering_key text NULL,
    payload      jsonb NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}'::jsonb,
    dedupe_key   text NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    created_at   timestamptz NOT NULL DEFAULT now(),
    status       text NOT NULL DEFAULT 'pending',
    attempts     integer NOT NULL DEFAULT 0,
    available_at timestamptz NOT NULL DEFAULT now(),
    last_error   text NULL,
    locked_by    text NULL,
    locked_until timestamptz NULL,
    delivered_at timestamptz NULL,
    CONSTRAINT outbox_events_status_check CHECK (status IN ('pending', 'delivered', 'dead')),
    CONSTRAINT outbox_events_attempts_check CHECK (attempts >= 0),
    CONSTRAINT outbox_events_payload_object CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT outbox_events_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    CONSTRAINT outbox_events_seq_key UNIQUE (seq),
    CONSTRAINT outbox_events_tenant_dedupe UNIQUE NULLS NOT DISTINCT (tenant_id, dedupe_key)
);

-- Claim: due pending rows in seq order (the partial index stays small: only pending rows).
CREATE INDEX IF NOT EXISTS outbox_events_pending_seq
    ON outbox_events (seq) INCLUDE (available_at, locked_until, ordering_key)
    WHERE status = 'pending';

-- Per-key order: "is there an earlier undelivered event of this key?"
CREATE INDEX IF NOT EXISTS outbox_events_undelivered_key_seq
    ON outbox_events (ordering_key, seq)
    WHERE status <> 'delivered';

-- Retention purge: delivered rows by age.
CREATE INDEX IF NOT EXISTS outbox_events_delivered_at
    ON outbox_events (delivered_at)
    WHERE status = 'delivered';

-- Rows written by plain SQL (any language) need only event_type and payload: the rest is
-- defaulted here or resolved from the catalog.
CREATE OR REPLACE FUNCTION outbox_events_fill_defaults() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    entry record;
BEGIN
    IF NEW.dedupe_key IS NULL THEN
        NEW.dedupe_key := NEW.id::text;
    END IF;
    IF NEW.schema_ref IS NULL OR NEW.category IS NULL THEN
        SELECT c.payload_schema_ref, c.category INTO entry
          FROM system_event_catalog c
         WHERE c.event_type = NEW.event_type;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'outbox: unknown event type "%": it is not in system_event_catalog (run outbox-relay migrate)', NEW.event_type
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        NEW.schema_ref := COALESCE(NEW.schema_ref, entry.payload_schema_ref);
        NEW.category := COALESCE(NEW.category, entry.category);
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS outbox_events_fill_defaults ON outbox_events;
CREATE TRIGGER outbox_events_fill_defaults
    BEFORE INSERT ON outbox_events
    FOR EACH ROW
    WHEN (NEW.dedupe_key IS NULL OR NEW.schema_ref IS NULL OR NEW.category IS NULL)
    EXECUTE FUNCTION outbox_events_fill_defaults();

-- Wake relays: one NOTIFY per inserting statement (Postgres folds duplicates within a
-- transaction and delivers them only at commit; a rollback sends nothing).
CREATE OR REPLACE FUNCTION outbox_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_events', '');
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS outbox_events_notify ON outbox_events;
CREATE TRIGGER outbox_events_notify
    AFTER INSERT ON outbox_events
    FOR EACH STATEMENT
    EXECUTE FUNCTION outbox_events_notify();

-- The consumer side: one row per (consumer, message id) applied.
CREATE TABLE IF NOT EXISTS outbox_inbox (
    consumer     text NOT NULL,
    message_id   text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

CREATE INDEX IF NOT EXISTS outbox_inbox_processed_at ON outbox_inbox (processed_at);
