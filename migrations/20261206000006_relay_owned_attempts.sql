-- Engine v3, step 3 (docs/delivery-engine.md, "Engine v3"): an event's failures — and its
-- death — leave the event row. The relay used to write a failed attempt onto the producer's
-- row: `attempts` incremented, `last_error`, `available_at` rewritten to the next try (the
-- producer's own column, which said when the event may *first* be sent), and `status =
-- 'dead'` at the end. Now all of that lives in `outbox_attempts`, a table only the relay
-- (and an operator's replay or discard) writes: a row per event that has failed at least
-- once, never one per delivery. A delivery writes nothing here, and a row stays until its
-- event is purged (it says how often a delivered event failed first).
--
-- A failed event that will be retried, and a dead one, stay `pending` on their row and are
-- *parked* (out of the claim's ready index): the retrying one until the claim unparks it at
-- its next try, the dead one until an operator replays or discards it. What stays on the
-- event row until the partitioned feed of step 4 replaces it: `status` (pending /
-- delivered / discarded) and `parked`, which the claim's indexes need. `attempts` and
-- `last_error` stay as columns (zero and empty for every new event, the insert trigger sees
-- to it) until step 5 drops them; events delivered before this migration keep their old
-- count there.
CREATE TABLE IF NOT EXISTS outbox_attempts (
    event_id        uuid PRIMARY KEY,
    -- Failed publish attempts (a nack, a return, a timeout, a lost connection, a refusal),
    -- saturating at 2147483647.
    failures        integer NOT NULL CHECK (failures >= 0),
    -- Why the last attempt failed (or, after a discard, who discarded it).
    last_error      text NULL,
    -- When a retrying event is due again; NULL once it is dead, discarded or replayed.
    next_attempt_at timestamptz NULL,
    -- When it became dead (its attempts ran out, or it can never be published): it holds
    -- its scope until an operator replays or discards it.
    dead_at         timestamptz NULL,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Events retrying after a failure, soonest first (the claim's due retries, `status`).
CREATE INDEX IF NOT EXISTS outbox_attempts_next
    ON outbox_attempts (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
-- Dead events (`status`, the gauges, `replay`, `discard`).
CREATE INDEX IF NOT EXISTS outbox_attempts_dead
    ON outbox_attempts (dead_at) WHERE dead_at IS NOT NULL;

-- Rows come and go with failures and purges: keep the table vacuumed like the lease table.
ALTER TABLE outbox_attempts SET (autovacuum_vacuum_scale_factor = 0,
                                 autovacuum_vacuum_threshold = 1000,
                                 autovacuum_vacuum_cost_delay = 0);

-- The failures of undelivered events move here (pending, dead, discarded: the relay or an
-- operator acts on them still), dead events with the time they died (the audit trail does
-- not say; the migration's time stands in). A pending event that failed keeps its
-- rewritten `available_at` as its next try, and is parked until then; a dead event becomes
-- a parked `pending` one; the row's counters are cleared, so each fact has one home.
-- Delivered events keep their count on the row (history, read by `inspect`).
INSERT INTO outbox_attempts (event_id, failures, last_error, next_attempt_at, dead_at)
SELECT id, GREATEST(attempts, 0), last_error,
       CASE WHEN status = 'pending' AND attempts > 0 THEN available_at END,
       CASE WHEN status = 'dead' THEN now() END
  FROM outbox_events
 WHERE status = 'dead'
    OR (status <> 'delivered' AND (attempts > 0 OR last_error IS NOT NULL))
ON CONFLICT (event_id) DO NOTHING;

UPDATE outbox_events
   SET status = CASE WHEN status = 'dead' THEN 'pending' ELSE status END,
       parked = CASE WHEN status = 'dead' OR (status = 'pending' AND attempts > 0)
                     THEN true ELSE parked END,
       attempts = 0, last_error = NULL
 WHERE status = 'dead'
    OR (status <> 'delivered' AND (attempts > 0 OR last_error IS NOT NULL));

-- A relay older than this migration, left running, would write `dead` on a row, which
-- nothing here reads as dead any more: its settle fails on this check instead, loudly
-- (SQLSTATE 23514). Checked for rows written or changed from now on (the rows above were
-- just converted; NOT VALID spares a scan of the table under its lock).
ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_no_dead_status
    CHECK (status <> 'dead') NOT VALID;

-- Every event with where it stands, for people, tools and tests: one definition of an
-- event's status, attempts and last error, whatever stores them (step 4 changes the
-- storage behind this view, not its columns).
--   status          pending, delivered, dead or discarded;
--   attempts        publish attempts so far (the failures, plus one once delivered);
--   last_error      why the last failed attempt failed (kept once it is delivered), or who
--                   discarded it;
--   due_at          when a pending event may be sent next (its `available_at`, or its
--                   next try after a failure, whichever is later);
--   dead_at         when it died (NULL unless dead; kept after a discard);
--   parked          out of the claim's ready index: waiting behind an earlier undelivered
--                   event of its scope, backing off after a failure, or dead;
--   leased_by, leased_until, lease_token: the claim holding it, if one does.
CREATE OR REPLACE VIEW outbox_event_status AS
SELECT e.id, e.seq, e.tenant_id, e.ordering_key,
       outbox_scope(e.tenant_id, e.ordering_key) AS scope,
       e.event_type, e.category, e.created_at, e.available_at,
       CASE WHEN e.status = 'pending' AND a.dead_at IS NOT NULL THEN 'dead'
            ELSE e.status END AS status,
       GREATEST(e.attempts, LEAST(COALESCE(a.failures, 0), 2147483646)
                            + CASE WHEN e.status = 'delivered' THEN 1 ELSE 0 END) AS attempts,
       COALESCE(a.last_error, e.last_error) AS last_error,
       CASE WHEN e.status = 'pending' AND a.dead_at IS NULL
            THEN GREATEST(e.available_at, COALESCE(a.next_attempt_at, e.available_at)) END AS due_at,
       e.delivered_at, a.dead_at, x.discarded_at, e.parked,
       l.relay_id AS leased_by, l.leased_until, l.token AS lease_token
  FROM outbox_events e
  LEFT JOIN outbox_attempts a ON a.event_id = e.id
  LEFT JOIN outbox_discarded x ON x.event_id = e.id
  LEFT JOIN outbox_leased_events l ON l.id = e.id;
