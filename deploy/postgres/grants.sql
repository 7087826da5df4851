-- Least privilege for the outbox: what each kind of client may do, and nothing more.
--
-- Run it as the owner of the outbox tables (the role that ran `outbox-relay migrate` or
-- `outbox_core::migrate`), in each database that has an outbox, after every migration:
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 \
--        -v writer_role=orders_service -v relay_role=outbox_relay \
--        -v operator_role=outbox_operator -v consumer_role=billing_consumer \
--        -f deploy/postgres/grants.sql
--
-- The roles must exist (`CREATE ROLE outbox_relay LOGIN PASSWORD ...`). The owner keeps
-- what no other role gets: migrations (ALTER, CREATE, DROP), and switching the wake-up mode
-- (`outbox-relay wakeup notify|poll` recreates a trigger). Nobody but the owner may
-- TRUNCATE, change the audit trail, or create objects (PostgreSQL 15 and later no longer
-- let every role create in the public schema). The functions of the schema (wake-up mode,
-- estimates, UUIDv7) are executable by everyone, as PostgreSQL's default allows.

-- Writers (domain services): insert events in their own transactions, naming only the
-- columns that describe an event (delivery state is the relay's: the insert trigger sets it
-- whatever an INSERT says, and a writer cannot even name it). The insert trigger reads the
-- catalog, takes the key's lock row and draws `seq`; the emit of an event with a dedupe key
-- reads back the id stored first.
-- (A service that registers event types of its own at start-up, `outbox_core::register_events`,
-- needs INSERT and UPDATE on system_event_catalog as well; to keep writers to SELECT, have the
-- owner register them instead: `outbox-relay migrate --service-events <export.json>`.)
GRANT SELECT ON system_event_catalog TO :"writer_role";
GRANT SELECT ON outbox_events TO :"writer_role";
-- (Grants of earlier versions of this file gave INSERT on the whole table: taken back, so
-- that re-running this file after an upgrade leaves only the column grants.)
REVOKE INSERT ON outbox_events FROM :"writer_role";
GRANT INSERT (id, tenant_id, event_type, schema_ref, category, ordering_key, payload, headers,
              dedupe_key, occurred_at, created_at, available_at)
    ON outbox_events TO :"writer_role";
-- A service that cancels the scheduled events it wrote (a DELETE before they are due) needs
-- `GRANT DELETE ON outbox_events` as well, and nothing more: the trigger that moves a held
-- scope on past a deleted head runs as the owner.
-- (The trigger draws `seq` through outbox_draw_seq(), which runs as the owner: writers
-- need no privilege on the 16 sequences, and grants of earlier versions of this file are
-- taken back — a writer that could call nextval() could burn values by the million.)
SELECT format('REVOKE ALL ON SEQUENCE %I FROM %I', 'outbox_events_seq_p' || p, :'writer_role')
  FROM generate_series(0, 15) AS p \gexec
GRANT SELECT, INSERT, UPDATE ON outbox_key_locks TO :"writer_role";

-- The relay (`outbox-relay run`): claims, settles and, with --retention, deletes finished
-- events. It never inserts an event and never touches the inbox or the audit trail.
-- It never writes an event's row (engine v3): it reads them, and retention deletes them.
REVOKE UPDATE ON outbox_events FROM :"relay_role";
GRANT SELECT, DELETE ON outbox_events TO :"relay_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_key_locks TO :"relay_role";
-- Its ownership session registers itself; claims forget relays that are gone.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_relay_owners TO :"relay_role";
-- What is in flight (the events of leased partitions), for its gauges.
GRANT SELECT ON outbox_leased_events TO :"relay_role";
-- Retention forgets the discard times of the discarded events it deletes.
GRANT SELECT, DELETE ON outbox_discarded TO :"relay_role";
-- Its settles count failures and schedule retries here; retention forgets them.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_attempts TO :"relay_role";
GRANT SELECT ON outbox_event_status TO :"relay_role";
-- The partitioned feed: each partition's frontier and lease, the gaps below the frontiers
-- and their groups (what may still fill them), the held scopes, the replays operators ask
-- for.
GRANT SELECT, UPDATE ON outbox_partitions TO :"relay_role";
GRANT SELECT, INSERT, DELETE, UPDATE (noted_xid) ON outbox_gaps TO :"relay_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_gap_groups TO :"relay_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_held TO :"relay_role";
GRANT SELECT, UPDATE, DELETE ON outbox_replays TO :"relay_role";
-- Events older relays delivered behind what is now a held head: walks pass over them,
-- retention forgets them.
GRANT SELECT, DELETE ON outbox_delivered_behind TO :"relay_role";

-- Operators (`status`, `inspect`, `replay`, `discard`, `purge`, `wakeup` to read the mode):
-- change event states (in the relay's tables), add audit records (the database stamps its
-- own role on each), and purge events and inbox records. They cannot edit or delete audit
-- records. (UPDATE on the events: a replay or discard locks the rows it selects, which
-- PostgreSQL allows only with an UPDATE privilege; no operator command writes an event.)
GRANT SELECT, UPDATE, DELETE ON outbox_events TO :"operator_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_key_locks TO :"operator_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_discarded TO :"operator_role";
-- What is in flight, for `status` and `inspect`.
GRANT SELECT ON outbox_leased_events TO :"operator_role";
-- A replay forgets an event's failures; a discard notes who discarded it beside them.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_attempts TO :"operator_role";
GRANT SELECT ON outbox_event_status TO :"operator_role";
-- A replay makes a dead head due again or asks for a delivered event once more; a discard
-- moves a held head past the discarded event.
GRANT SELECT ON outbox_partitions, outbox_gaps, outbox_gap_groups TO :"operator_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_held, outbox_replays TO :"operator_role";
GRANT SELECT, DELETE ON outbox_delivered_behind TO :"operator_role";
GRANT SELECT, INSERT ON outbox_replay_audit TO :"operator_role";
-- (A purge locks the rows it deletes, which PostgreSQL allows only with an UPDATE
-- privilege: the operator may update the inbox's timestamp, nothing else of it.)
GRANT SELECT, DELETE ON outbox_inbox TO :"operator_role";
GRANT UPDATE (processed_at) ON outbox_inbox TO :"operator_role";

-- Consumers that keep their inbox in this database (`outbox_core::inbox::record`).
GRANT SELECT, INSERT ON outbox_inbox TO :"consumer_role";
