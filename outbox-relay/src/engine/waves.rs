//! Publishing a claim in waves: which events go out together, and which are held back.
//!
//! Events of one ordering scope (a tenant's ordering key, see [`Scope`]) must reach the
//! broker in seq order, and none may go out before the earlier events of its scope are
//! confirmed. A claim is therefore split into lanes, one per scope (an event without an
//! ordering key is a lane of its own), and published in waves: wave *n* holds the *n*-th
//! event of every lane, and the next wave starts once the broker has answered for this one.
//! An event that is not confirmed (it failed, was rejected, or was never sent) releases the
//! rest of its lane unpublished; an unreadable event of the claim holds back the later
//! events of its scope. A wave starts only while the lease has room for it.
//!
//! Plain functions over plain data; the delivery loop (`service/relay.rs`) publishes,
//! settles and logs.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::engine::event::{ClaimedEvent, Scope};

/// The events of one scope still to publish, in seq order (or one event without a key).
pub(crate) type Lane<'a> = VecDeque<&'a ClaimedEvent>;

/// A claimed row that could not be read, as far as it could be read: it is dead, and holds
/// back the later events of its scope in the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unreadable<'a> {
    /// Its seq.
    pub(crate) seq: i64,
    /// Its ordering key: `Some(None)` for an event without one (it holds back nothing),
    /// `None` when even the key could not be read (it holds back every later event).
    pub(crate) ordering_key: Option<Option<&'a str>>,
    /// Its tenant: `None` when it is not known, and the key is then held back in every
    /// tenant.
    pub(crate) tenant_id: Option<Option<Uuid>>,
}

impl Unreadable<'_> {
    /// Whether this unreadable event holds `event` back: `event` comes after it in its
    /// scope, or after it at all when its scope is unknown.
    pub(crate) fn holds_back(&self, event: &ClaimedEvent) -> bool {
        if event.seq <= self.seq {
            return false;
        }
        match self.ordering_key {
            None => true,
            Some(None) => false,
            Some(Some(key)) => {
                event.ordering_key.as_deref() == Some(key)
                    && self
                        .tenant_id
                        .is_none_or(|tenant| tenant == event.tenant_id)
            }
        }
    }
}

/// Splits a claim's readable `events` into those that may be published and those an event
/// of `unreadable` holds back (to be released unpublished), each in the order given.
pub(crate) fn hold_back<'a>(
    events: &'a [ClaimedEvent],
    unreadable: &[Unreadable<'_>],
) -> (Vec<&'a ClaimedEvent>, Vec<&'a ClaimedEvent>) {
    events
        .iter()
        .partition(|event| !unreadable.iter().any(|u| u.holds_back(event)))
}

/// Splits a seq-ordered batch into one lane per ordering scope (events without a key each
/// get their own), preserving seq order within every lane. Lanes come in the order of
/// their first event.
pub(crate) fn lanes_by_scope<'a>(batch: &[&'a ClaimedEvent]) -> Vec<Lane<'a>> {
    let mut index: HashMap<Scope<'a>, usize> = HashMap::new();
    let mut lanes: Vec<Lane<'a>> = Vec::new();
    for &event in batch {
        match event.scope() {
            Some(scope) => {
                let lane = *index.entry(scope).or_insert_with(|| {
                    lanes.push(VecDeque::new());
                    lanes.len() - 1
                });
                if let Some(queue) = lanes.get_mut(lane) {
                    queue.push_back(event);
                }
            }
            None => lanes.push(VecDeque::from([event])),
        }
    }
    lanes
}

/// The next wave: the first event left in every lane, each with its lane's index (to
/// release the rest of that lane if the event is not confirmed). Empty when all is out.
pub(crate) fn next_wave<'a>(lanes: &mut [Lane<'a>]) -> Vec<(usize, &'a ClaimedEvent)> {
    lanes
        .iter_mut()
        .enumerate()
        .filter_map(|(lane, events)| events.pop_front().map(|event| (lane, event)))
        .collect()
}

/// Empties lane `lane` and returns the ids of its events, in seq order: its event in the
/// wave was not confirmed, so nothing after it in its scope may go out.
pub(crate) fn release_lane(lanes: &mut [Lane<'_>], lane: usize) -> Vec<Uuid> {
    lanes
        .get_mut(lane)
        .map(|events| events.drain(..).map(|event| event.id).collect())
        .unwrap_or_default()
}

/// Empties every lane and returns the ids of their events, lane by lane: the batch stops
/// here (shutdown, a broken link, a lease running short).
pub(crate) fn release_all(lanes: &mut [Lane<'_>]) -> Vec<Uuid> {
    (0..lanes.len())
        .flat_map(|lane| release_lane(lanes, lane))
        .collect()
}

/// Whether the lease, ending at `lease_ends`, is too short at `now` for another wave that
/// may take `wave_and_settle` (the worst case of a wave plus the settle's reserve). Rows
/// whose lease runs out may be claimed by another relay, and publishing them here too could
/// put a later event of their scope out first there.
pub(crate) fn lease_short(now: Instant, wave_and_settle: Duration, lease_ends: Instant) -> bool {
    now.checked_add(wave_and_settle)
        .is_none_or(|done_by| done_by >= lease_ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Uuid = Uuid::from_u128(0xa);
    const B: Uuid = Uuid::from_u128(0xb);

    fn event(seq: i64, tenant: Option<Uuid>, key: Option<&str>) -> ClaimedEvent {
        ClaimedEvent {
            id: Uuid::from_u128(seq as u128),
            seq,
            tenant_id: tenant,
            event_type: "TICKET_CREATED".to_owned(),
            schema_ref: "ticket.created.v1".to_owned(),
            category: "Tickets".to_owned(),
            ordering_key: key.map(str::to_owned),
            payload: "{}".to_owned(),
            headers: serde_json::json!({}),
            dedupe_key: format!("d{seq}"),
            occurred_at: chrono::DateTime::UNIX_EPOCH,
            created_at: chrono::DateTime::UNIX_EPOCH,
            attempts: 0,
        }
    }

    fn seqs(lane: &Lane<'_>) -> Vec<i64> {
        lane.iter().map(|event| event.seq).collect()
    }

    fn ids(seqs: &[i64]) -> Vec<Uuid> {
        seqs.iter()
            .map(|&seq| Uuid::from_u128(seq as u128))
            .collect()
    }

    #[test]
    fn lanes_are_scopes_so_two_tenants_sharing_a_key_do_not_wait_for_each_other() {
        let events = [
            event(1, Some(A), Some("ticket:1")),
            event(2, Some(B), Some("ticket:1")),
            event(3, Some(A), Some("ticket:1")),
            event(4, None, Some("ticket:1")),
            event(5, Some(A), Some("ticket:2")),
            event(6, None, Some("ticket:1")),
            event(7, Some(B), Some("ticket:1")),
        ];
        let batch: Vec<&ClaimedEvent> = events.iter().collect();
        let lanes = lanes_by_scope(&batch);
        let lanes: Vec<Vec<i64>> = lanes.iter().map(seqs).collect();
        assert_eq!(lanes, [vec![1, 3], vec![2, 7], vec![4, 6], vec![5]]);
    }

    #[test]
    fn an_event_without_a_key_is_a_lane_of_its_own() {
        let events = [
            event(1, Some(A), None),
            event(2, Some(A), None),
            event(3, Some(A), Some("k")),
            event(4, None, None),
        ];
        let batch: Vec<&ClaimedEvent> = events.iter().collect();
        let lanes: Vec<Vec<i64>> = lanes_by_scope(&batch).iter().map(seqs).collect();
        assert_eq!(lanes, [vec![1], vec![2], vec![3], vec![4]]);
    }

    #[test]
    fn wave_n_holds_the_nth_event_of_every_lane() {
        let events = [
            event(1, Some(A), Some("k")),
            event(2, Some(B), Some("k")),
            event(3, Some(A), Some("k")),
            event(4, Some(A), Some("k")),
            event(5, Some(A), None),
        ];
        let batch: Vec<&ClaimedEvent> = events.iter().collect();
        let mut lanes = lanes_by_scope(&batch);
        let mut waves = Vec::new();
        loop {
            let wave = next_wave(&mut lanes);
            if wave.is_empty() {
                break;
            }
            waves.push(
                wave.iter()
                    .map(|(lane, event)| (*lane, event.seq))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(
            waves,
            [vec![(0, 1), (1, 2), (2, 5)], vec![(0, 3)], vec![(0, 4)]]
        );
    }

    #[test]
    fn an_event_not_confirmed_releases_only_the_rest_of_its_own_scope() {
        let events = [
            event(1, Some(A), Some("k")),
            event(2, Some(B), Some("k")),
            event(3, Some(A), Some("k")),
            event(4, Some(B), Some("k")),
            event(5, Some(A), Some("k")),
        ];
        let batch: Vec<&ClaimedEvent> = events.iter().collect();
        let mut lanes = lanes_by_scope(&batch);
        let wave = next_wave(&mut lanes);
        assert_eq!(wave.len(), 2);
        // Tenant A's first event failed: A's later events go back unpublished, B's go on.
        let (failed_lane, failed) = wave[0];
        assert_eq!(failed.seq, 1);
        assert_eq!(release_lane(&mut lanes, failed_lane), ids(&[3, 5]));
        let wave: Vec<i64> = next_wave(&mut lanes).iter().map(|(_, e)| e.seq).collect();
        assert_eq!(wave, [4]);
        assert!(next_wave(&mut lanes).is_empty());
        // A lane that is not there releases nothing.
        assert!(release_lane(&mut lanes, 99).is_empty());
    }

    #[test]
    fn stopping_releases_every_lane_in_order() {
        let events = [
            event(1, Some(A), Some("k")),
            event(2, Some(B), Some("k")),
            event(3, Some(A), Some("k")),
            event(4, Some(B), Some("k")),
            event(5, None, None),
        ];
        let batch: Vec<&ClaimedEvent> = events.iter().collect();
        let mut lanes = lanes_by_scope(&batch);
        let wave = next_wave(&mut lanes);
        assert_eq!(wave.len(), 3);
        assert_eq!(release_all(&mut lanes), ids(&[3, 4]));
        assert!(next_wave(&mut lanes).is_empty());
    }

    #[test]
    fn an_unreadable_event_holds_back_the_later_events_of_its_scope() {
        let events = [
            event(1, Some(A), Some("k")),
            event(3, Some(A), Some("k")),
            event(4, Some(B), Some("k")),
            event(5, Some(A), Some("other")),
            event(6, Some(A), None),
        ];
        let unreadable = Unreadable {
            seq: 2,
            ordering_key: Some(Some("k")),
            tenant_id: Some(Some(A)),
        };
        let (publishable, held) = hold_back(&events, &[unreadable]);
        let seqs = |events: &[&ClaimedEvent]| events.iter().map(|e| e.seq).collect::<Vec<_>>();
        // Before it (1), other tenants (4), other keys (5), no key (6) go out.
        assert_eq!(seqs(&publishable), [1, 4, 5, 6]);
        assert_eq!(seqs(&held), [3]);
    }

    #[test]
    fn an_unreadable_event_whose_tenant_is_unknown_holds_back_its_key_in_every_tenant() {
        let events = [
            event(3, Some(A), Some("k")),
            event(4, Some(B), Some("k")),
            event(5, None, Some("k")),
            event(6, Some(A), Some("other")),
        ];
        let unreadable = Unreadable {
            seq: 2,
            ordering_key: Some(Some("k")),
            tenant_id: None,
        };
        let (publishable, held) = hold_back(&events, &[unreadable]);
        assert_eq!(publishable.len(), 1);
        assert_eq!(held.len(), 3);
    }

    #[test]
    fn an_unreadable_event_without_a_key_holds_back_nothing() {
        let events = [
            event(1, Some(A), Some("k")),
            event(3, Some(A), Some("k")),
            event(4, Some(B), None),
        ];
        let unkeyed = Unreadable {
            seq: 2,
            ordering_key: Some(None),
            tenant_id: Some(Some(A)),
        };
        let (publishable, held) = hold_back(&events, &[unkeyed]);
        assert_eq!((publishable.len(), held.len()), (3, 0));
    }

    #[test]
    fn an_unreadable_event_whose_key_is_unknown_holds_back_everything_after_it() {
        let events = [
            event(1, Some(A), Some("k")),
            event(3, Some(A), Some("k")),
            event(4, Some(B), None),
        ];
        let unknown = Unreadable {
            seq: 2,
            ordering_key: None,
            tenant_id: None,
        };
        let (publishable, held) = hold_back(&events, &[unknown]);
        assert_eq!(publishable.len(), 1);
        assert_eq!(publishable[0].seq, 1);
        assert_eq!(held.len(), 2);
    }

    #[test]
    fn a_wave_starts_only_while_the_lease_has_room_for_it_and_the_settle() {
        let now = Instant::now();
        let needed = Duration::from_secs(21);
        assert!(!lease_short(now, needed, now + Duration::from_secs(60)));
        assert!(lease_short(now, needed, now + needed));
        assert!(lease_short(now, needed, now + Duration::from_secs(20)));
        assert!(lease_short(
            now,
            Duration::MAX,
            now + Duration::from_secs(60)
        ));
    }
}
