-- Engine v3, gap groups (docs/delivery-engine.md, "Gap groups: a long transaction costs its
-- own gaps, not every claim"). A gap (a seq missing below a partition's frontier) was looked
-- up on every claim until it filled or could never fill: with a transaction of a million
-- events still open, every claim probed a million index entries (0.5-1.5 s per claim,
-- measured) although none of them could become visible before that one transaction ended.
--
-- The gaps one settle notes in a partition now form a *group*, which remembers the
-- transactions that could still commit them (`waiting`: every transaction running when the
-- group was noted, older than the settle). A claim looks at a group's gaps only when one of
-- those has ended since it last looked (or it was never looked at: `recheck`), and then
-- keeps only those still running. Each gap row belongs to its group (a foreign key: a relay
-- older than this migration, which notes gaps without a group, fails its settle instead of
-- leaving gaps no claim would look at; deleting a group deletes its gaps).
--
-- Stop every relay first (an older relay's settles fail after this migration, see above).

LOCK TABLE outbox_gaps IN ACCESS EXCLUSIVE MODE;

CREATE TABLE IF NOT EXISTS outbox_gap_groups (
    part      integer NOT NULL,
    -- The transaction id of the settle that noted the group's gaps (every gap of the group
    -- has it as its `noted_xid`).
    noted_xid xid8 NOT NULL,
    -- Transactions that may still commit a gap of the group: those running when it was
    -- noted, less those found ended by a claim that read the group in full since.
    waiting   xid8[] NOT NULL,
    -- Not read in full since it was noted: due at the next claim whatever `waiting` says.
    recheck   boolean NOT NULL DEFAULT true,
    noted_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (part, noted_xid)
);

-- The gaps noted so far, one group per settle that noted them. What may still commit them:
-- every transaction running now (a superset: the migration's snapshot lists those below its
-- `xmax`, and every id from there to the migration's own was handed out to a transaction
-- that had not ended when the snapshot was taken). Each group is read in full at the first
-- claim after the upgrade (`recheck`).
INSERT INTO outbox_gap_groups (part, noted_xid, waiting, recheck)
SELECT g.part, g.noted_xid,
       ARRAY(SELECT x FROM pg_snapshot_xip(pg_current_snapshot()) AS x
             UNION
             SELECT s::text::xid8
               FROM generate_series(pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
                                    pg_current_xact_id()::text::bigint - 1) AS s),
       true
  FROM (SELECT DISTINCT part, noted_xid FROM outbox_gaps) AS g
ON CONFLICT (part, noted_xid) DO NOTHING;

ALTER TABLE outbox_gaps
    ADD CONSTRAINT outbox_gaps_group FOREIGN KEY (part, noted_xid)
        REFERENCES outbox_gap_groups (part, noted_xid) ON DELETE CASCADE;

-- A group's gaps in seq order (the claim's read of a group, the cascade of its delete);
-- replaces the index on `part` alone.
CREATE INDEX IF NOT EXISTS outbox_gaps_group_seq ON outbox_gaps (part, noted_xid, seq);
DROP INDEX IF EXISTS outbox_gaps_part;

ALTER TABLE outbox_gap_groups SET (autovacuum_vacuum_scale_factor = 0,
                                   autovacuum_vacuum_threshold = 200,
                                   autovacuum_vacuum_cost_delay = 0);
