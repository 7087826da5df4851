//! What a claim takes from what it found: plain functions between the claim's statements
//! (`store/claim.rs` runs the statements and feeds each function the rows it read).
//!
//! 1. The ready scan returns candidates, each with the seq of the undelivered event before it
//!    in its scope (none for a head). [`split`]: heads are leased, the rest are parked.
//! 2. [`plan_runs`]: the heads leave room in the batch for runs behind them. When heads
//!    alone would fill it (then not every scope can be served anyway), the oldest heads come
//!    with runs of up to [`RUN_DEPTH`] and younger heads fill what is left; otherwise the
//!    room is shared evenly between the keyed heads.
//! 3. [`runs_from`]: the rows behind each head arrive grouped by scope in seq order; a run
//!    ends at its first row that is not ready (failing, dead, leased or not due).
//! 4. [`complete`]: the chosen rows (heads, runs, younger heads, within the limit), and the
//!    rows to park, less any that the claim leases.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

/// A head and the events behind it that one claim takes together when heads alone would
/// fill the batch: the next head of a scope is then unparked once per run, not once per
/// event, and a run is published in as many waves as it is long.
pub const RUN_DEPTH: usize = 4;

/// A ready row as the claim's scan found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Event id.
    pub id: Uuid,
    /// Its seq.
    pub seq: i64,
    /// The ordering scope's name (`outbox_scope()`); `None` for an unordered event.
    pub scope: Option<String>,
    /// The seq of the undelivered event before it in its scope; `None` for a head.
    pub predecessor: Option<i64>,
}

/// Heads (no earlier undelivered event in their scope), in scan order, and the ids of the
/// rows found behind another event (to park).
pub fn split(candidates: Vec<Candidate>) -> (Vec<Candidate>, Vec<Uuid>) {
    let (heads, behind): (Vec<Candidate>, Vec<Candidate>) = candidates
        .into_iter()
        .partition(|c| c.predecessor.is_none());
    (heads, behind.into_iter().map(|c| c.id).collect())
}

/// How the room a batch has left is spent on runs behind heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan<'a> {
    /// Heads taken first, in scan order.
    pub leading: &'a [Candidate],
    /// Heads taken after the runs, as room allows.
    pub younger: &'a [Candidate],
    /// The keyed heads of `leading` whose runs to read, and at most how many rows each;
    /// `None` when there is no room or no keyed head.
    pub runs: Option<(Vec<&'a Candidate>, usize)>,
}

/// Plans the runs of a claim of at most `limit` events with `heads`.
pub fn plan_runs(heads: &[Candidate], limit: usize) -> RunPlan<'_> {
    let limit = limit.max(1);
    let first = if heads.len() >= limit {
        limit.div_ceil(RUN_DEPTH)
    } else {
        heads.len()
    };
    let (leading, younger) = heads.split_at(first.min(heads.len()));
    let keyed: Vec<&Candidate> = leading.iter().filter(|c| c.scope.is_some()).collect();
    let room = limit.saturating_sub(leading.len());
    let runs = (room > 0 && !keyed.is_empty()).then(|| {
        let share = room.div_ceil(keyed.len());
        (keyed, share)
    });
    RunPlan {
        leading,
        younger,
        runs,
    }
}

/// The ids of the runs behind heads, from rows `(scope, id, ready)` grouped by scope in seq
/// order: each run ends at its scope's first row that is not ready.
pub fn runs_from(rows: Vec<(String, Uuid, bool)>) -> Vec<Uuid> {
    let mut stopped: HashMap<String, bool> = HashMap::new();
    let mut run = Vec::new();
    for (scope, id, ready) in rows {
        let stop = stopped.entry(scope).or_insert(false);
        if *stop || !ready {
            *stop = true;
            continue;
        }
        run.push(id);
    }
    run
}

/// The rows a claim leases — the leading heads, then the runs, then younger heads, at most
/// `limit` — and the rows it parks: those found behind another event, less any it leases
/// (an event replayed ahead of an unparked head is both; one statement must not change a
/// row twice).
pub fn complete(
    plan: &RunPlan<'_>,
    runs: Vec<Uuid>,
    to_park: Vec<Uuid>,
    limit: usize,
) -> (Vec<Uuid>, Vec<Uuid>) {
    let limit = limit.max(1);
    let mut chosen: Vec<Uuid> = plan.leading.iter().map(|c| c.id).collect();
    let room = limit.saturating_sub(chosen.len());
    chosen.extend(runs.into_iter().take(room));
    let room = limit.saturating_sub(chosen.len());
    chosen.extend(plan.younger.iter().take(room).map(|c| c.id));
    let in_claim: HashSet<&Uuid> = chosen.iter().collect();
    let to_park = to_park
        .into_iter()
        .filter(|id| !in_claim.contains(id))
        .collect();
    (chosen, to_park)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn head(n: u128, scope: Option<&str>) -> Candidate {
        Candidate {
            id: id(n),
            seq: n as i64,
            scope: scope.map(str::to_owned),
            predecessor: None,
        }
    }

    #[test]
    fn heads_are_leased_and_followers_parked() {
        let mut behind = head(2, Some("k"));
        behind.predecessor = Some(1);
        let (heads, park) = split(vec![head(1, Some("k")), behind, head(3, None)]);
        assert_eq!(
            heads.iter().map(|c| c.id).collect::<Vec<_>>(),
            [id(1), id(3)]
        );
        assert_eq!(park, [id(2)]);
    }

    #[test]
    fn room_is_shared_between_keyed_heads() {
        let heads = vec![head(1, Some("a")), head(2, None), head(3, Some("b"))];
        let plan = plan_runs(&heads, 10);
        assert_eq!(plan.leading.len(), 3);
        assert!(plan.younger.is_empty());
        let (keyed, share) = plan.runs.clone().expect("room for runs");
        assert_eq!(
            keyed.iter().map(|c| c.id).collect::<Vec<_>>(),
            [id(1), id(3)]
        );
        assert_eq!(share, 4, "seven left for two scopes, rounded up");
    }

    #[test]
    fn when_heads_fill_the_batch_the_oldest_come_with_runs() {
        let heads: Vec<Candidate> = (1..=20).map(|n| head(n, Some("k"))).collect();
        let plan = plan_runs(&heads, 8);
        assert_eq!(plan.leading.len(), 8 / RUN_DEPTH);
        assert_eq!(plan.younger.len(), 18);
        let (keyed, share) = plan.runs.clone().expect("room for runs");
        assert_eq!((keyed.len(), share), (2, 3));
        // Runs of three behind each of the two; nothing left for younger heads.
        let runs: Vec<Uuid> = (100..106).map(id).collect();
        let (chosen, _) = complete(&plan, runs, Vec::new(), 8);
        assert_eq!(chosen.len(), 8);
        assert_eq!(chosen[..2], [id(1), id(2)]);
    }

    #[test]
    fn no_runs_without_room_or_keys() {
        assert!(
            plan_runs(&[head(1, None), head(2, None)], 10)
                .runs
                .is_none()
        );
        assert!(plan_runs(&[head(1, Some("k"))], 1).runs.is_none());
        assert!(plan_runs(&[], 10).runs.is_none());
    }

    #[test]
    fn a_run_stops_at_its_first_row_that_is_not_ready() {
        let rows = vec![
            ("a".to_owned(), id(1), true),
            ("a".to_owned(), id(2), false),
            ("a".to_owned(), id(3), true),
            ("b".to_owned(), id(4), true),
            ("b".to_owned(), id(5), true),
        ];
        assert_eq!(runs_from(rows), [id(1), id(4), id(5)]);
    }

    #[test]
    fn a_row_leased_is_not_also_parked_and_the_limit_holds() {
        let heads = vec![head(1, Some("a")), head(2, None)];
        let plan = plan_runs(&heads, 3);
        let (chosen, park) = complete(&plan, vec![id(7), id(8)], vec![id(7), id(9)], 3);
        assert_eq!(chosen, [id(1), id(2), id(7)]);
        assert_eq!(park, [id(9)]);
    }
}
