-- When each discarded event was discarded (engine v3, step 1): retention keeps a discarded
-- event for the retention period counted from its discard, so an operator can still replay
-- it, not from when it was written. The relay's state, in a table of its own (engine v3
-- keeps delivery state off the producer's row). Events discarded before this migration
-- take their time from the audit trail (`discard` records), or else from now.
CREATE TABLE IF NOT EXISTS outbox_discarded (
    event_id     uuid PRIMARY KEY,
    discarded_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO outbox_discarded (event_id, discarded_at)
SELECT e.id, COALESCE(a.at, now())
  FROM outbox_events e
  LEFT JOIN (SELECT ids.id, max(r.replayed_at) AS at
               FROM outbox_replay_audit r CROSS JOIN LATERAL unnest(r.event_ids) AS ids(id)
              WHERE r.action = 'discard'
              GROUP BY ids.id) AS a ON a.id = e.id
 WHERE e.status = 'discarded'
ON CONFLICT (event_id) DO NOTHING;
