//! What a claim of one partition of the feed takes from what it read (engine v3, step 4b:
//! docs/delivery-engine.md, "Step 4b, designed"). Plain functions: the statements that
//! read a partition in one snapshot feed [`plan`] the rows, and the settle writes what it
//! returns.
//!
//! A partition `p` holds the events whose `seq % 16 = p`; its seqs are handed out as the
//! progression `p, p + 16, p + 32, ...` (migration `20261206000007`). Its row in
//! `outbox_partitions` keeps a *frontier*: every seq of the partition up to it has been
//! read, or is a *gap* (a seq missing below one that was visible: its writer was still
//! open, or rolled back). A claim reads, in one snapshot:
//! - the segment: the partition's events after the frontier, in seq order, up to a limit;
//! - the gaps noted earlier that may have filled, with their rows where these are now
//!   visible: the gaps one settle notes form a *group*, which remembers the transactions
//!   that could still commit them, and only a *due* group is read (one of those has ended
//!   since it was last read in full, or it never was) — a transaction that stays open
//!   costs the claims nothing until it ends ([`take_gaps`]);
//! - the *held* scopes (a scope whose head cannot go now: backing off after a failure,
//!   dead, scheduled for later, or released unpublished) of the events it read, and the
//!   held scopes that are due, each with its *walk*: its events from the held head on,
//!   up to the segment's end.
//!
//! [`plan`] then decides what goes out, in seq order (within a scope, seq order is commit
//! order: the writers' scope lock is taken before the draw), where the frontier moves, which
//! gaps are noted and which forgotten (with which groups, or narrowed to the transactions
//! still running), and which scopes become held because their next
//! event is not due yet. Two facts make it safe to hold back only the gaps, not whole
//! scopes. A gap's writer had its transaction id before it drew, so before the gap was
//! seen; the gap is noted with a transaction id assigned *after* the snapshot that saw it
//! (the settle's own), so once the oldest running transaction is younger than that id, the
//! gap is visible or never will be. (A snapshot's `xmax` would not do: it is one past the
//! latest *finished* transaction, and a writer younger than that may still run.) And a later
//! event of a gap's scope cannot be visible while the gap's writer runs: it waited for the
//! scope's lock. `tests/tests/partitioned_feed.rs` checks the reading rule against
//! concurrent writers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Partitions of the feed: `seq % PARTITIONS` is an event's partition.
pub const PARTITIONS: i64 = 16;

/// The partition of `seq`.
pub fn partition_of(seq: i64) -> i64 {
    seq.rem_euclid(PARTITIONS)
}

/// An event as a claim read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRow {
    /// Its seq.
    pub seq: i64,
    /// Its id.
    pub id: Uuid,
    /// Its scope's name: `outbox_scope(tenant_id, ordering_key)` for a keyed event, `#<id>`
    /// for an unkeyed one (a scope of its own).
    pub scope: String,
    /// When the producer let it go first (`available_at`), if that is later than the
    /// snapshot's time; `None` when it is due.
    pub not_before: Option<DateTime<Utc>>,
}

/// A due gap group (the gaps one settle noted in the partition) as a claim read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapGroupRead {
    /// The transaction id of the settle that noted it, assigned after the snapshot that saw
    /// its gaps: every writer that could still commit one of them has a smaller one.
    pub noted_xid: u64,
    /// The rows of its gaps that are visible now, in seq order, at most the read's limit.
    pub rows: Vec<FeedRow>,
}

/// A gap group a claim read, and whether it read all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapGroup {
    /// The transaction id of the settle that noted it.
    pub noted_xid: u64,
    /// Whether the claim took every row of it that is visible in its snapshot.
    pub complete: bool,
}

/// What a claim takes of the due gap groups it read in a partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GapsTaken {
    /// The rows taken, in seq order: a prefix of every gap row visible in the snapshot.
    pub rows: Vec<FeedRow>,
    /// The groups read, each complete or not.
    pub groups: Vec<GapGroup>,
    /// Whether every visible gap row of the partition was taken: only then may the claim
    /// read the segment (whose events could belong to the scopes of a gap row left out).
    pub complete: bool,
}

/// Takes the rows of the due gap groups `groups` of a partition, read in the order they
/// were noted (which is seq order: a settle notes gaps only above the frontier the settles
/// before it left), each read up to `limit` rows; `more_groups` when more groups were due
/// than read. At most `limit` rows in all. A group whose read came back full may have more,
/// and a group cut short by the room left is not complete either; the groups after one
/// that is not complete are not taken at all, so what is taken is a prefix in seq order.
/// (A group that is not due has no visible row: every transaction that could commit one
/// of its gaps still runs.)
pub fn take_gaps(groups: Vec<GapGroupRead>, more_groups: bool, limit: usize) -> GapsTaken {
    let mut taken = GapsTaken {
        complete: !more_groups,
        ..GapsTaken::default()
    };
    let mut room = limit;
    for group in groups {
        let full = group.rows.len() >= limit;
        if full || group.rows.len() > room {
            taken.rows.extend(group.rows.into_iter().take(room));
            taken.groups.push(GapGroup {
                noted_xid: group.noted_xid,
                complete: false,
            });
            taken.complete = false;
            break;
        }
        room -= group.rows.len();
        taken.rows.extend(group.rows);
        taken.groups.push(GapGroup {
            noted_xid: group.noted_xid,
            complete: true,
        });
    }
    taken
}

/// A held scope of the partition, as this claim found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldScope {
    /// The scope's name (as [`FeedRow::scope`]).
    pub scope: String,
    /// The seq of its head: nothing of the scope from here on goes out but by a walk.
    pub head_seq: i64,
    /// Whether it is due now (its retry's or schedule's time has come, or it was released);
    /// never for a dead head.
    pub due: bool,
}

/// The walk of a due held scope: its events from the head on, up to the segment's end, in
/// seq order, at most as many as the claim reads per scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    /// The held scope.
    pub held: HeldScope,
    /// Its rows from `held.head_seq` on.
    pub rows: Vec<FeedRow>,
    /// Whether the walk stopped at its limit with more rows of the scope behind it (up to
    /// the segment's end).
    pub cut_short: bool,
}

/// What one claim of a partition read, in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRead {
    /// The partition.
    pub part: i64,
    /// Its frontier when the claim began.
    pub frontier: i64,
    /// The segment: events after the frontier, in seq order.
    pub segment: Vec<FeedRow>,
    /// The rows of gaps noted before that are visible now, in seq order (of the due gap
    /// groups read: [`take_gaps`]).
    pub gaps: Vec<FeedRow>,
    /// The due gap groups read.
    pub gap_groups: Vec<GapGroup>,
    /// Every held scope among the scopes of the segment's and the gaps' rows.
    pub held: Vec<HeldScope>,
    /// The walks of the due held scopes.
    pub walks: Vec<Walk>,
}

/// A scope this claim holds because its next event is not due yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The scope.
    pub scope: String,
    /// Its first event that is not due: the held head.
    pub head_seq: i64,
    /// When it is due.
    pub due_at: DateTime<Utc>,
}

/// Where a walk left its held scope, once everything it took is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEnd {
    /// The scope.
    pub scope: String,
    /// Its held head when the claim read it (a settle changes the held row only if the head
    /// is still this one: an operator may have moved it meanwhile).
    pub head_seq: i64,
    /// Where the head goes once everything taken is delivered: `None` to let the scope go
    /// (the walk reached the segment's end: later events come with the feed), or the seq of
    /// the first event the walk did not take (cut short, or not due: see `schedule`).
    pub next: Option<i64>,
}

/// What a claim of a partition takes and what its settle will write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeedPlan {
    /// The events to publish, in seq order (each scope's in its order).
    pub publish: Vec<FeedRow>,
    /// The frontier after this claim: the segment's last seq, or the frontier it began at.
    pub frontier: i64,
    /// Seqs missing in the segment (below its last seq), to note as gaps with a transaction
    /// id assigned after the claim's snapshot (the settle's).
    pub new_gaps: Vec<i64>,
    /// Gaps to forget: read now (visible), including those now covered by their scope's
    /// held head.
    pub forget_gaps: Vec<i64>,
    /// Gap groups read in full (every gap row of theirs visible in the claim's snapshot
    /// taken): from now on each waits only for the transactions still running in that
    /// snapshot, and is forgotten with its gaps when none is, or no gap of it is left.
    pub read_groups: Vec<u64>,
    /// Scopes to hold because their next event is not due yet.
    pub schedules: Vec<Schedule>,
    /// Where each walk leaves its scope.
    pub walk_ends: Vec<WalkEnd>,
}

/// Decides what a claim of `read.part` publishes and what its settle writes.
pub fn plan(read: &PartitionRead) -> FeedPlan {
    let mut plan = FeedPlan {
        frontier: read.frontier,
        ..FeedPlan::default()
    };
    let held: HashMap<&str, &HeldScope> = read
        .held
        .iter()
        .chain(read.walks.iter().map(|w| &w.held))
        .map(|h| (h.scope.as_str(), h))
        .collect();
    // Scopes that stop in this claim at an event not yet due: nothing of theirs after it.
    let mut stopped: BTreeMap<String, Schedule> = BTreeMap::new();
    let mut publish: BTreeMap<i64, FeedRow> = BTreeMap::new();

    // Walks first: a held scope's events from its head on.
    for walk in &read.walks {
        let mut next = None;
        for row in &walk.rows {
            if let Some(due_at) = row.not_before {
                stopped.insert(
                    walk.held.scope.clone(),
                    Schedule {
                        scope: walk.held.scope.clone(),
                        head_seq: row.seq,
                        due_at,
                    },
                );
                next = Some(row.seq);
                break;
            }
            publish.insert(row.seq, row.clone());
        }
        if next.is_none() && walk.cut_short {
            next = walk
                .rows
                .last()
                .map(|last| last.seq.saturating_add(1))
                .or(Some(walk.held.head_seq));
        }
        plan.walk_ends.push(WalkEnd {
            scope: walk.held.scope.clone(),
            head_seq: walk.held.head_seq,
            next,
        });
    }

    // Then every other row the claim read, in seq order: the visible gaps (all below the
    // frontier), then the segment (above it).
    let mut others: Vec<&FeedRow> = Vec::new();
    for row in &read.gaps {
        plan.forget_gaps.push(row.seq);
        others.push(row);
    }
    plan.read_groups = read
        .gap_groups
        .iter()
        .filter(|g| g.complete)
        .map(|g| g.noted_xid)
        .collect();
    others.extend(read.segment.iter());
    others.sort_by_key(|row| row.seq);
    for row in others {
        if let Some(h) = held.get(row.scope.as_str()) {
            // A held scope's events go out only by its walk, from its head on. (A visible
            // gap below its head cannot be: the head was drawn after the gap's writer
            // ended. Should one be, it goes out now, like an event of a free scope.)
            if row.seq >= h.head_seq {
                continue;
            }
        }
        if stopped.contains_key(&row.scope) {
            continue;
        }
        if let Some(due_at) = row.not_before {
            stopped.insert(
                row.scope.clone(),
                Schedule {
                    scope: row.scope.clone(),
                    head_seq: row.seq,
                    due_at,
                },
            );
            continue;
        }
        publish.insert(row.seq, row.clone());
    }

    // The frontier moves over the segment; the seqs of the partition it skips are gaps.
    if let Some(last) = read.segment.last() {
        let seen: BTreeSet<i64> = read.segment.iter().map(|r| r.seq).collect();
        let mut expected = read.frontier.saturating_add(PARTITIONS);
        while expected < last.seq {
            if !seen.contains(&expected) {
                plan.new_gaps.push(expected);
            }
            expected = expected.saturating_add(PARTITIONS);
        }
        plan.frontier = plan.frontier.max(last.seq);
    }
    // Walks that ended at an event not due, and scopes first held now.
    plan.schedules = stopped.into_values().collect();
    plan.publish = publish.into_values().collect();
    plan
}

/// How many partitions one claim of a relay with `loops` delivery loops leases at most: the
/// partitions shared among its loops (rounded up), so that one loop's claim serves many
/// partitions in one batch (a partition with one new event does not wait for its own
/// claim), while the other loops, and other relays, still find partitions free.
pub fn partitions_per_claim(loops: u32) -> u32 {
    let partitions = PARTITIONS as u32;
    partitions.div_ceil(loops.max(1)).clamp(1, partitions)
}

/// How many events a claim that leased `parts` partitions reads from each at most, when it
/// shares its batch evenly (a full read: [`crate::store::feed`]): `limit` split so that
/// the shares differ by one at most and add up to `limit` exactly, each at least one (a
/// claim leases no more partitions than its batch holds events).
pub fn shares(limit: i64, parts: usize) -> Vec<i64> {
    let n = i64::try_from(parts).unwrap_or(i64::MAX).max(1);
    let limit = limit.max(n);
    (0..n)
        .map(|i| limit / n + i64::from(i < limit % n))
        .take(parts)
        .collect()
}

/// The room of a partition's gaps and segment, out of `room`, when `due` held scopes are
/// to be walked too: all of it without walks, half with (so neither starves the other),
/// and none when there is room for one event only: the walks' scopes then go first (the
/// segment is read by the next claim; left to the segment, a partition that keeps getting
/// new events would never walk them).
pub fn segment_room(room: i64, due: usize) -> i64 {
    match (due, room) {
        (0, room) => room.max(1),
        (_, ..=1) => 0,
        (_, room) => room / 2,
    }
}

/// Of `due` walks in a partition with `room` left, how many this claim takes (the others
/// stay due for the next claim) and how many events each reads at most (`walk_limit` a
/// walk at most): every walk taken gets at least one, and together no more than `room`.
pub fn walk_limits(room: i64, due: usize, walk_limit: i64) -> (usize, i64) {
    let room = room.max(0);
    let taken = due.min(usize::try_from(room).unwrap_or(usize::MAX));
    if taken == 0 {
        return (0, 0);
    }
    let each = room / i64::try_from(taken).unwrap_or(i64::MAX);
    (taken, each.clamp(1, walk_limit.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, scope: &str) -> FeedRow {
        FeedRow {
            seq,
            id: Uuid::from_u128(seq as u128),
            scope: scope.to_owned(),
            not_before: None,
        }
    }

    fn later(seq: i64, scope: &str) -> FeedRow {
        FeedRow {
            not_before: Some(DateTime::<Utc>::MAX_UTC),
            ..row(seq, scope)
        }
    }

    fn read(part: i64, frontier: i64, segment: Vec<FeedRow>) -> PartitionRead {
        PartitionRead {
            part,
            frontier,
            segment,
            gaps: Vec::new(),
            gap_groups: Vec::new(),
            held: Vec::new(),
            walks: Vec::new(),
        }
    }

    fn seqs(plan: &FeedPlan) -> Vec<i64> {
        plan.publish.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn a_relays_loops_share_the_partitions() {
        assert_eq!(partitions_per_claim(1), 16);
        assert_eq!(partitions_per_claim(3), 6);
        assert_eq!(partitions_per_claim(4), 4);
        assert_eq!(partitions_per_claim(16), 1);
        assert_eq!(partitions_per_claim(64), 1);
        assert_eq!(partitions_per_claim(0), 16);
    }

    #[test]
    fn a_batch_is_shared_evenly_among_its_partitions_and_never_exceeded() {
        assert_eq!(shares(500, 1), vec![500]);
        assert_eq!(shares(500, 6), vec![84, 84, 83, 83, 83, 83]);
        assert_eq!(shares(500, 16).iter().sum::<i64>(), 500);
        assert_eq!(shares(4, 4), vec![1, 1, 1, 1]);
        assert_eq!(shares(0, 1), vec![1]);
        assert_eq!(shares(10, 0), Vec::<i64>::new());
        for limit in 1..=600 {
            for parts in 1..=16_usize.min(limit as usize) {
                let split = shares(limit, parts);
                assert_eq!(split.len(), parts);
                assert_eq!(split.iter().sum::<i64>(), limit, "{limit} over {parts}");
                let (min, max) = (split.iter().min(), split.iter().max());
                assert!(
                    max.zip(min)
                        .is_some_and(|(max, min)| max - min <= 1 && *min >= 1)
                );
            }
        }
    }

    #[test]
    fn walks_share_the_room_left_and_those_without_room_wait() {
        assert_eq!(segment_room(100, 0), 100);
        assert_eq!(segment_room(100, 3), 50);
        assert_eq!(segment_room(1, 3), 0);
        assert_eq!(segment_room(2, 3), 1);
        assert_eq!(segment_room(1, 0), 1);
        // With walks due, the walks always get some of the room.
        for room in 1..50 {
            for due in 1..5 {
                let left = room - segment_room(room, due);
                assert!(walk_limits(left, due, 100).0 >= 1, "room {room}, {due} due");
            }
        }
        assert_eq!(walk_limits(300, 2, 100), (2, 100));
        assert_eq!(walk_limits(50, 5, 100), (5, 10));
        assert_eq!(walk_limits(3, 5, 100), (3, 1));
        assert_eq!(walk_limits(0, 5, 100), (0, 0));
        assert_eq!(walk_limits(-4, 5, 100), (0, 0));
        assert_eq!(walk_limits(10, 0, 100), (0, 0));
        for room in 0..40 {
            for due in 0..12 {
                let (taken, each) = walk_limits(room, due, 100);
                assert!(taken <= due && (taken as i64) * each <= room.max(0));
                assert!(taken == 0 || each >= 1);
            }
        }
    }

    #[test]
    fn the_partition_of_a_seq_is_its_remainder() {
        assert_eq!(partition_of(35), 3);
        assert_eq!(partition_of(16), 0);
        assert_eq!(partition_of(-1), 15);
    }

    #[test]
    fn a_segment_without_holes_goes_out_whole_and_moves_the_frontier() {
        let plan = plan(&read(3, 3, vec![row(19, "a"), row(35, "b"), row(51, "a")]));
        assert_eq!(seqs(&plan), vec![19, 35, 51]);
        assert_eq!(plan.frontier, 51);
        assert!(plan.new_gaps.is_empty());
        assert!(plan.forget_gaps.is_empty());
    }

    #[test]
    fn seqs_the_segment_skips_become_gaps_and_nothing_after_its_end_does() {
        let plan = plan(&read(3, 3, vec![row(35, "a"), row(83, "b")]));
        assert_eq!(plan.new_gaps, vec![19, 51, 67]);
        assert_eq!(plan.frontier, 83);
    }

    #[test]
    fn an_empty_segment_keeps_the_frontier() {
        let plan = plan(&read(3, 99, Vec::new()));
        assert_eq!(plan.frontier, 99);
        assert!(plan.publish.is_empty() && plan.new_gaps.is_empty());
    }

    #[test]
    fn a_visible_gap_goes_out_before_the_later_events_of_its_scope() {
        let mut r = read(3, 51, vec![row(67, "a"), row(83, "b")]);
        r.gaps = vec![row(35, "a")];
        let plan = plan(&r);
        assert_eq!(seqs(&plan), vec![35, 67, 83]);
        assert_eq!(plan.forget_gaps, vec![35]);
    }

    fn group(noted_xid: u64, rows: &[i64]) -> GapGroupRead {
        GapGroupRead {
            noted_xid,
            rows: rows.iter().map(|&seq| row(seq, "s")).collect(),
        }
    }

    fn taken_seqs(taken: &GapsTaken) -> Vec<i64> {
        taken.rows.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn gap_groups_read_in_full_are_taken_whole_and_the_partition_is_complete() {
        let taken = take_gaps(
            vec![group(7, &[19, 51]), group(9, &[]), group(12, &[99])],
            false,
            10,
        );
        assert_eq!(taken_seqs(&taken), vec![19, 51, 99]);
        assert!(taken.complete);
        assert!(taken.groups.iter().all(|g| g.complete));
        assert_eq!(
            taken.groups.iter().map(|g| g.noted_xid).collect::<Vec<_>>(),
            vec![7, 9, 12]
        );
    }

    #[test]
    fn a_group_cut_short_ends_what_is_taken_and_leaves_the_partition_incomplete() {
        // The room runs out inside the second group: its first row only, and no later group.
        let taken = take_gaps(
            vec![group(7, &[19, 51]), group(9, &[67, 83]), group(12, &[99])],
            false,
            3,
        );
        assert_eq!(taken_seqs(&taken), vec![19, 51, 67]);
        assert!(!taken.complete);
        assert_eq!(
            taken.groups,
            vec![
                GapGroup {
                    noted_xid: 7,
                    complete: true
                },
                GapGroup {
                    noted_xid: 9,
                    complete: false
                }
            ]
        );
        // A read that came back full may have more rows: not complete.
        let taken = take_gaps(vec![group(7, &[19, 51])], false, 2);
        assert_eq!(taken_seqs(&taken), vec![19, 51]);
        assert!(!taken.complete && !taken.groups[0].complete);
        // No room at all: nothing is taken, nothing is complete.
        let taken = take_gaps(vec![group(7, &[])], false, 0);
        assert!(taken.rows.is_empty() && !taken.complete && !taken.groups[0].complete);
    }

    #[test]
    fn more_groups_due_than_read_leave_the_partition_incomplete() {
        let taken = take_gaps(vec![group(7, &[19])], true, 10);
        assert_eq!(taken_seqs(&taken), vec![19]);
        assert!(taken.groups[0].complete);
        assert!(!taken.complete);
        assert!(take_gaps(Vec::new(), false, 10).complete);
    }

    #[test]
    fn only_the_groups_read_in_full_are_narrowed() {
        let mut r = read(3, 51, Vec::new());
        r.gap_groups = vec![
            GapGroup {
                noted_xid: 100,
                complete: true,
            },
            GapGroup {
                noted_xid: 105,
                complete: true,
            },
            GapGroup {
                noted_xid: 110,
                complete: false,
            },
        ];
        let plan = plan(&r);
        assert_eq!(plan.read_groups, vec![100, 105]);
        assert!(plan.publish.is_empty() && plan.forget_gaps.is_empty());
    }

    #[test]
    fn events_of_a_held_scope_wait_for_its_walk_and_others_flow() {
        let mut r = read(3, 3, vec![row(19, "a"), row(35, "b"), row(51, "a")]);
        r.held = vec![HeldScope {
            scope: "a".into(),
            head_seq: 3,
            due: false,
        }];
        let plan = plan(&r);
        assert_eq!(seqs(&plan), vec![35]);
        assert_eq!(
            plan.frontier, 51,
            "the frontier passes the held scope's events"
        );
    }

    #[test]
    fn a_due_walk_goes_out_in_order_with_the_segment_and_lets_its_scope_go() {
        let mut r = read(3, 35, vec![row(51, "a"), row(67, "b")]);
        r.walks = vec![Walk {
            held: HeldScope {
                scope: "a".into(),
                head_seq: 19,
                due: true,
            },
            rows: vec![row(19, "a"), row(35, "a"), row(51, "a")],
            cut_short: false,
        }];
        let plan = plan(&r);
        assert_eq!(seqs(&plan), vec![19, 35, 51, 67]);
        assert_eq!(
            plan.walk_ends,
            vec![WalkEnd {
                scope: "a".into(),
                head_seq: 19,
                next: None
            }]
        );
    }

    #[test]
    fn a_walk_cut_short_keeps_its_scope_held_after_what_it_took() {
        let mut r = read(3, 99, Vec::new());
        r.walks = vec![Walk {
            held: HeldScope {
                scope: "a".into(),
                head_seq: 19,
                due: true,
            },
            rows: vec![row(19, "a"), row(35, "a")],
            cut_short: true,
        }];
        let plan = plan(&r);
        assert_eq!(seqs(&plan), vec![19, 35]);
        assert_eq!(plan.walk_ends[0].next, Some(36));
    }

    #[test]
    fn an_event_not_due_holds_its_scope_from_it_on() {
        let plan = plan(&read(
            3,
            3,
            vec![row(19, "a"), later(35, "a"), row(51, "a"), row(67, "b")],
        ));
        assert_eq!(seqs(&plan), vec![19, 67]);
        assert_eq!(plan.schedules.len(), 1);
        assert_eq!(plan.schedules[0].scope, "a");
        assert_eq!(plan.schedules[0].head_seq, 35);
        assert_eq!(plan.frontier, 67);
    }

    #[test]
    fn a_walk_stops_at_an_event_not_due_and_moves_its_head_there() {
        let mut r = read(3, 99, Vec::new());
        r.walks = vec![Walk {
            held: HeldScope {
                scope: "a".into(),
                head_seq: 19,
                due: true,
            },
            rows: vec![row(19, "a"), later(35, "a"), row(51, "a")],
            cut_short: false,
        }];
        let plan = plan(&r);
        assert_eq!(seqs(&plan), vec![19]);
        assert_eq!(plan.walk_ends[0].next, Some(35));
        assert_eq!(plan.schedules[0].head_seq, 35);
    }
}
