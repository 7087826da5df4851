//! What a settle of a feed claim changes in the relay's tables (engine v3, step 4b:
//! docs/delivery-engine.md, "Step 4b, designed"): plain functions from the claim's plan
//! ([`crate::engine::feed_claim::plan`]) and the outcome of each published event to the
//! held scopes to write or let go. Nothing is written per delivered event: the frontier
//! (in the plan) covers them.
//!
//! Per scope, in seq order, the first event that did not go out decides: a failure holds
//! the scope there until its next try (or dead at the attempt limit, which the statement
//! decides from the event's count of failures), a rejection holds it there dead, a release
//! holds it there due at once. A scope whose events all went out keeps what its claim
//! decided for it: a walk's end (let go, or moved on), or a schedule (held at its first
//! event not due).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::engine::feed_claim::FeedPlan;
use crate::engine::outcome::Outcome;

/// When a held scope's head may go again.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    /// At once (released unpublished, or a walk cut short).
    Now,
    /// At this time (a head scheduled for later by its producer).
    At(DateTime<Utc>),
    /// After this backoff, unless the event has now failed as often as allowed: then dead.
    Retry(Duration),
    /// Never, until an operator replays or discards it.
    Dead,
}

/// A change to one held scope.
#[derive(Debug, Clone, PartialEq)]
pub enum HeldChange {
    /// Hold `scope` at `head_seq` (insert, or move its head), due as `due`. With
    /// `expected_head`, only if its held head is still that one (a walk's scope: an operator
    /// may have moved it since the claim).
    Hold {
        /// The scope.
        scope: String,
        /// Its new head.
        head_seq: i64,
        /// When it goes again.
        due: Due,
        /// The head the claim walked from, if it walked the scope.
        expected_head: Option<i64>,
    },
    /// Let `scope` go: its events come with the feed again. Only if its held head is still
    /// `expected_head`.
    Release {
        /// The scope.
        scope: String,
        /// The head the claim walked from.
        expected_head: i64,
    },
}

impl HeldChange {
    /// The scope changed.
    pub fn scope(&self) -> &str {
        match self {
            HeldChange::Hold { scope, .. } | HeldChange::Release { scope, .. } => scope,
        }
    }
}

/// The held-scope changes of a settle, one per scope, in scope order.
pub fn held_changes(plan: &FeedPlan, outcomes: &HashMap<Uuid, Outcome>) -> Vec<HeldChange> {
    let mut changes: BTreeMap<String, HeldChange> = BTreeMap::new();
    let walked: HashMap<&str, i64> = plan
        .walk_ends
        .iter()
        .map(|w| (w.scope.as_str(), w.head_seq))
        .collect();
    // The first event of each scope that did not go out (publish is in seq order).
    for row in &plan.publish {
        if changes.contains_key(&row.scope) {
            continue;
        }
        let due = match outcomes.get(&row.id) {
            Some(Outcome::Delivered) => continue,
            Some(Outcome::Failed { retry_in, .. }) => Due::Retry(*retry_in),
            Some(Outcome::Rejected { .. }) => Due::Dead,
            Some(Outcome::Released) | None => Due::Now,
        };
        changes.insert(
            row.scope.clone(),
            HeldChange::Hold {
                scope: row.scope.clone(),
                head_seq: row.seq,
                due,
                expected_head: walked.get(row.scope.as_str()).copied(),
            },
        );
    }
    // Scopes whose next event is not due yet: held there (unless a failure came first).
    for schedule in &plan.schedules {
        changes
            .entry(schedule.scope.clone())
            .or_insert_with(|| HeldChange::Hold {
                scope: schedule.scope.clone(),
                head_seq: schedule.head_seq,
                due: Due::At(schedule.due_at),
                expected_head: walked.get(schedule.scope.as_str()).copied(),
            });
    }
    // Walks whose events all went out: let go, or moved on past what they took.
    for end in &plan.walk_ends {
        changes
            .entry(end.scope.clone())
            .or_insert_with(|| match end.next {
                None => HeldChange::Release {
                    scope: end.scope.clone(),
                    expected_head: end.head_seq,
                },
                Some(next) => HeldChange::Hold {
                    scope: end.scope.clone(),
                    head_seq: next,
                    due: Due::Now,
                    expected_head: Some(end.head_seq),
                },
            });
    }
    changes.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::feed_claim::{FeedRow, Schedule, WalkEnd};

    fn row(seq: i64, scope: &str) -> FeedRow {
        FeedRow {
            seq,
            id: Uuid::from_u128(seq as u128),
            scope: scope.to_owned(),
            not_before: None,
        }
    }

    fn id(seq: i64) -> Uuid {
        Uuid::from_u128(seq as u128)
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            error: "nack".into(),
            retry_in: Duration::from_secs(5),
        }
    }

    #[test]
    fn deliveries_change_no_held_scope() {
        let plan = FeedPlan {
            publish: vec![row(19, "a"), row(35, "b")],
            frontier: 35,
            ..FeedPlan::default()
        };
        let outcomes = HashMap::from([(id(19), Outcome::Delivered), (id(35), Outcome::Delivered)]);
        assert!(held_changes(&plan, &outcomes).is_empty());
    }

    #[test]
    fn the_first_event_of_a_scope_that_did_not_go_out_holds_it() {
        let plan = FeedPlan {
            publish: vec![
                row(19, "a"),
                row(35, "a"),
                row(51, "a"),
                row(67, "b"),
                row(83, "c"),
            ],
            frontier: 83,
            ..FeedPlan::default()
        };
        let outcomes = HashMap::from([
            (id(19), Outcome::Delivered),
            (id(35), failed()),
            (id(51), Outcome::Released),
            (
                id(67),
                Outcome::Rejected {
                    error: "too large".into(),
                },
            ),
            (id(83), Outcome::Released),
        ]);
        assert_eq!(
            held_changes(&plan, &outcomes),
            vec![
                HeldChange::Hold {
                    scope: "a".into(),
                    head_seq: 35,
                    due: Due::Retry(Duration::from_secs(5)),
                    expected_head: None
                },
                HeldChange::Hold {
                    scope: "b".into(),
                    head_seq: 67,
                    due: Due::Dead,
                    expected_head: None
                },
                HeldChange::Hold {
                    scope: "c".into(),
                    head_seq: 83,
                    due: Due::Now,
                    expected_head: None
                },
            ]
        );
    }

    #[test]
    fn an_event_without_an_outcome_is_released() {
        let plan = FeedPlan {
            publish: vec![row(19, "a")],
            ..FeedPlan::default()
        };
        assert_eq!(
            held_changes(&plan, &HashMap::new()),
            vec![HeldChange::Hold {
                scope: "a".into(),
                head_seq: 19,
                due: Due::Now,
                expected_head: None
            }]
        );
    }

    #[test]
    fn a_walk_delivered_to_its_end_lets_its_scope_go_and_one_that_failed_moves_its_head() {
        let plan = FeedPlan {
            publish: vec![row(19, "a"), row(35, "b"), row(51, "b")],
            walk_ends: vec![
                WalkEnd {
                    scope: "a".into(),
                    head_seq: 19,
                    next: None,
                },
                WalkEnd {
                    scope: "b".into(),
                    head_seq: 35,
                    next: None,
                },
            ],
            ..FeedPlan::default()
        };
        let outcomes = HashMap::from([
            (id(19), Outcome::Delivered),
            (id(35), Outcome::Delivered),
            (id(51), failed()),
        ]);
        assert_eq!(
            held_changes(&plan, &outcomes),
            vec![
                HeldChange::Release {
                    scope: "a".into(),
                    expected_head: 19
                },
                HeldChange::Hold {
                    scope: "b".into(),
                    head_seq: 51,
                    due: Due::Retry(Duration::from_secs(5)),
                    expected_head: Some(35)
                },
            ]
        );
    }

    #[test]
    fn a_walk_cut_short_moves_on_at_once_and_a_schedule_holds_until_its_time() {
        let at = DateTime::<Utc>::MAX_UTC;
        let plan = FeedPlan {
            publish: vec![row(19, "a"), row(35, "b")],
            walk_ends: vec![WalkEnd {
                scope: "a".into(),
                head_seq: 19,
                next: Some(20),
            }],
            schedules: vec![Schedule {
                scope: "b".into(),
                head_seq: 51,
                due_at: at,
            }],
            ..FeedPlan::default()
        };
        let outcomes = HashMap::from([(id(19), Outcome::Delivered), (id(35), Outcome::Delivered)]);
        assert_eq!(
            held_changes(&plan, &outcomes),
            vec![
                HeldChange::Hold {
                    scope: "a".into(),
                    head_seq: 20,
                    due: Due::Now,
                    expected_head: Some(19)
                },
                HeldChange::Hold {
                    scope: "b".into(),
                    head_seq: 51,
                    due: Due::At(at),
                    expected_head: None
                },
            ]
        );
    }

    #[test]
    fn a_failure_before_a_schedule_holds_the_scope_at_the_failure() {
        let plan = FeedPlan {
            publish: vec![row(19, "a")],
            schedules: vec![Schedule {
                scope: "a".into(),
                head_seq: 35,
                due_at: DateTime::<Utc>::MAX_UTC,
            }],
            ..FeedPlan::default()
        };
        let outcomes = HashMap::from([(id(19), failed())]);
        let changes = held_changes(&plan, &outcomes);
        assert_eq!(changes.len(), 1);
        assert!(matches!(
            &changes[0],
            HeldChange::Hold {
                head_seq: 19,
                due: Due::Retry(_),
                ..
            }
        ));
    }
}
