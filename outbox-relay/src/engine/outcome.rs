//! What a settle records for each event of a claim: the outcome of its publication, and how
//! a batch of outcomes becomes the settle's statements (`store/settle.rs` runs them).

use std::time::Duration;

use uuid::Uuid;

use crate::engine::status::Status;

/// What happened to one claimed event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The broker confirmed it (routed and stored).
    Delivered,
    /// The attempt failed and may succeed later: retry after `retry_in`, or `dead` once the
    /// attempt limit is reached.
    Failed {
        /// Why (nack, unroutable, timeout, connection lost).
        error: String,
        /// Backoff before the next attempt.
        retry_in: Duration,
    },
    /// The event can never be published as stored (too large, unreadable, ...): `dead` now.
    Rejected {
        /// Why.
        error: String,
    },
    /// Not published (an earlier event of its scope failed, the lease ran short, or
    /// shutdown): unleased untouched.
    Released,
}

impl Outcome {
    /// The name the settle's statement dispatches on.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed { .. } => "failed",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Released => "released",
        }
    }

    /// The outcome recorded instead when this one cannot be (a value of the row fails the
    /// statement): the event is dead, with the cause.
    pub fn unrecordable(&self, cause: &str) -> Outcome {
        Outcome::Rejected {
            error: format!(
                "the relay could not record this event's outcome ({}): {cause}",
                self.kind()
            ),
        }
    }
}

/// Every outcome but delivery, as the columns of the settle's general statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutcomeColumns<'a> {
    /// Event ids.
    pub ids: Vec<Uuid>,
    /// [`Outcome::kind`] of each.
    pub kinds: Vec<&'static str>,
    /// The error to keep (none for a release).
    pub errors: Vec<Option<&'a str>>,
    /// Seconds before the next attempt (failures only; 0 otherwise).
    pub delays: Vec<f64>,
}

/// Splits outcomes into deliveries (a plain statement: most outcomes are these) and the
/// rest, in the order given.
pub fn split_deliveries(outcomes: &[(Uuid, Outcome)]) -> (Vec<Uuid>, Vec<&(Uuid, Outcome)>) {
    let (delivered, others): (Vec<_>, Vec<_>) = outcomes
        .iter()
        .partition(|(_, outcome)| *outcome == Outcome::Delivered);
    (delivered.into_iter().map(|(id, _)| *id).collect(), others)
}

/// The columns of `others` (outcomes other than delivery).
pub fn columns<'a>(others: &[&'a (Uuid, Outcome)]) -> OutcomeColumns<'a> {
    let mut columns = OutcomeColumns::default();
    for (id, outcome) in others {
        columns.ids.push(*id);
        columns.kinds.push(outcome.kind());
        let (error, delay) = match outcome {
            Outcome::Failed { error, retry_in } => (Some(error.as_str()), retry_in.as_secs_f64()),
            Outcome::Rejected { error } => (Some(error.as_str()), 0.0),
            Outcome::Delivered | Outcome::Released => (None, 0.0),
        };
        columns.errors.push(error);
        columns.delays.push(delay);
    }
    columns
}

/// How a row the general statement changed counts in a settle's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// Released unpublished.
    Released,
    /// Now dead.
    Dead,
    /// Pending again, for a retry.
    Retrying,
}

/// The tally of a row settled with outcome `kind` that now has `status`.
pub fn tally(kind: &str, status: Option<Status>) -> Tally {
    match (kind, status) {
        ("released", _) => Tally::Released,
        (_, Some(Status::Dead)) => Tally::Dead,
        _ => Tally::Retrying,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn deliveries_go_apart_and_the_rest_become_columns() {
        let outcomes = vec![
            (id(1), Outcome::Delivered),
            (
                id(2),
                Outcome::Failed {
                    error: "nack".into(),
                    retry_in: Duration::from_millis(1500),
                },
            ),
            (id(3), Outcome::Delivered),
            (
                id(4),
                Outcome::Rejected {
                    error: "too large".into(),
                },
            ),
            (id(5), Outcome::Released),
        ];
        let (delivered, others) = split_deliveries(&outcomes);
        assert_eq!(delivered, [id(1), id(3)]);
        let columns = columns(&others);
        assert_eq!(columns.ids, [id(2), id(4), id(5)]);
        assert_eq!(columns.kinds, ["failed", "rejected", "released"]);
        assert_eq!(columns.errors, [Some("nack"), Some("too large"), None]);
        assert_eq!(columns.delays, [1.5, 0.0, 0.0]);
    }

    #[test]
    fn rows_are_tallied_by_outcome_and_new_status() {
        assert_eq!(tally("released", Some(Status::Pending)), Tally::Released);
        assert_eq!(tally("failed", Some(Status::Dead)), Tally::Dead);
        assert_eq!(tally("rejected", Some(Status::Dead)), Tally::Dead);
        assert_eq!(tally("failed", Some(Status::Pending)), Tally::Retrying);
    }

    #[test]
    fn an_unrecordable_outcome_is_a_rejection_naming_it() {
        let replaced = Outcome::Delivered.unrecordable("integer out of range");
        assert_eq!(
            replaced,
            Outcome::Rejected {
                error: "the relay could not record this event's outcome (delivered): integer out of range"
                    .into()
            }
        );
    }
}
