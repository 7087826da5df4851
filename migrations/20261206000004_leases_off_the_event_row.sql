-- Engine v3, step 2 (docs/delivery-engine.md, "Engine v3"): a claim's lease leaves the
-- event row. A claim used to write every event it took (`claim_token`, `locked_by`,
-- `locked_until`: a row version with its index entries per event, the largest single cost
-- of a claim) and the settle wrote it again to clear them. Now a claim writes one row per
-- ordering scope it takes (and per unordered event), in a table only the relay writes, and
-- the settle deletes it: an event row is written once by its producer and once by its
-- delivery. The lease columns stay on the event row (always empty, the insert trigger sees
-- to it) until engine v3 drops the state columns.
--
-- What a claim leases is a scope: while a scope is leased, no other claim takes any event
-- of it. The lease row says which of the scope's events the claim took (`first_seq` to
-- `last_seq`, `events` of them), for `status`, `inspect` and the gauges.
CREATE TABLE IF NOT EXISTS outbox_leases (
    -- The ordering scope (`outbox_scope(tenant_id, ordering_key)`), or `#<event id>` for an
    -- event without an ordering key (a scope's name never starts with `#`).
    lease_key    text PRIMARY KEY,
    -- The claim's token: only the settle presenting it records outcomes under this lease.
    token        uuid NOT NULL,
    -- The claiming relay's ownership lock key (`outbox_relay_owners.owner`), when it holds
    -- one: the lease also ends when that relay is gone.
    owner        integer NULL,
    -- The claiming relay's name (`--relay-id`), for people.
    relay_id     text NOT NULL,
    -- The lease's wall-clock end (the database's clock).
    leased_until timestamptz NOT NULL,
    -- The scope's events the claim took: seqs first_seq..last_seq, `events` of them.
    first_seq    bigint NOT NULL,
    last_seq     bigint NOT NULL,
    events       integer NOT NULL
);

-- The settle finds its claim's leases by token.
CREATE INDEX IF NOT EXISTS outbox_leases_token ON outbox_leases (token);

-- A row per scope per batch comes and goes: vacuum the table often, so the claim's look-ups
-- and reaps stay on a table the size of what is in flight.
ALTER TABLE outbox_leases SET (autovacuum_vacuum_scale_factor = 0,
                               autovacuum_vacuum_threshold = 5000,
                               autovacuum_vacuum_cost_delay = 0);

-- Leases written on event rows by relays older than this migration: those relays are
-- stopped for the upgrade (the operating guide says so), so their leases end here and the
-- events are claimed again (at least once: a batch an old relay published and had not
-- settled goes out again, with the same message id). Relays have always set the three
-- columns together (the partial index `outbox_events_leased` finds them).
UPDATE outbox_events SET claim_token = NULL, locked_by = NULL, locked_until = NULL
 WHERE claim_token IS NOT NULL;

-- An older relay left running would lease on the row, unseen by new relays (and would not
-- see theirs): two relays could then publish one scope at once. Its claims fail on this
-- check instead, loudly (SQLSTATE 23514), while its settles (which only clear the columns)
-- still record what it published. Checked for rows written or changed from now on (the
-- rows above were just cleared; NOT VALID spares a scan of the table under its lock).
ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_no_row_lease
    CHECK (claim_token IS NULL AND locked_by IS NULL AND locked_until IS NULL) NOT VALID;

-- The event-row lease index is empty from now on; the ready index no longer needs to leave
-- leased rows out (a claim skips leased scopes by a look-up in outbox_leases).
DROP INDEX IF EXISTS outbox_events_leased;
DROP INDEX IF EXISTS outbox_events_ready;
CREATE INDEX IF NOT EXISTS outbox_events_ready
    ON outbox_events (available_at, seq)
    WHERE status = 'pending' AND NOT parked;

-- Which events are in flight, one row per leased event, for people and tools (`inspect`,
-- the tests): the pending events of each leased scope in the leased seq range, and the
-- leased unordered events.
CREATE OR REPLACE VIEW outbox_leased_events AS
SELECT e.id, e.seq, l.lease_key, l.token, l.owner, l.relay_id, l.leased_until
  FROM outbox_leases l
  JOIN outbox_events e
    ON outbox_scope(e.tenant_id, e.ordering_key) = l.lease_key
   AND e.seq BETWEEN l.first_seq AND l.last_seq
   AND e.status = 'pending'
 WHERE l.lease_key NOT LIKE '#%'
UNION ALL
SELECT e.id, e.seq, l.lease_key, l.token, l.owner, l.relay_id, l.leased_until
  FROM outbox_leases l
  JOIN outbox_events e
    ON e.id = CASE WHEN l.lease_key LIKE '#%' THEN CAST(substr(l.lease_key, 2) AS uuid) END
   AND e.status = 'pending'
 WHERE l.lease_key LIKE '#%';
