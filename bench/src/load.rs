//! Writing backlogs through the real write path.
//!
//! Rows are inserted with `INSERT ... SELECT FROM generate_series`, so every row goes through
//! `outbox_events_before_insert`: catalog check, the per-key lock in `outbox_key_locks`, and
//! `seq` drawn under it from the sequence of the key's partition. A blocked head is brought
//! to its state by the relay's own `claim` and `settle` (a held scope in `outbox_held`, or a
//! partition leased by another relay). Nothing is set by hand.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use catalog_types::{
    CatalogEvent, TicketAssigned, TicketMessageAdded, TicketStatusChanged, TicketTimeEntryAdded,
    TicketUpdated,
};
use outbox_relay::store::settle::{self, Outcome};
use outbox_relay::store::{claim, feed};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Tenants the keys are spread over.
pub const TENANTS: i64 = 500;

/// Rows per inserting statement (one transaction each).
const CHUNK: i64 = 100_000;

/// Which ordering key row `i` gets: the blocked key (`ticket:<md5 of -1>`) when
/// `i % den < num`, otherwise key number `(i / den) % keys`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct KeyPlan {
    /// Distinct keys for the rows that are not on the blocked key.
    pub keys: i64,
    /// Rows on the blocked key, per `den` rows.
    pub blocked_num: i64,
    /// See `blocked_num`.
    pub blocked_den: i64,
}

impl KeyPlan {
    /// Every row on one of `keys` keys, interleaved (row `i` on key `i % keys`).
    pub fn spread(keys: i64) -> KeyPlan {
        KeyPlan {
            keys: keys.max(1),
            blocked_num: 0,
            blocked_den: 1,
        }
    }

    /// Every row on the blocked key.
    pub fn blocked() -> KeyPlan {
        KeyPlan {
            keys: 1,
            blocked_num: 1,
            blocked_den: 1,
        }
    }

    /// `num` of every `den` rows on the blocked key, the others interleaved over `keys` keys.
    pub fn mixed(keys: i64, num: i64, den: i64) -> KeyPlan {
        KeyPlan {
            keys: keys.max(1),
            blocked_num: num,
            blocked_den: den.max(1),
        }
    }
}

/// Example payloads of a few catalog event types keyed by ticket (each row gets its own
/// `tenantId` and `ticketId`).
pub struct Payloads {
    event_types: Vec<String>,
    payloads: Vec<serde_json::Value>,
}

fn example<T: CatalogEvent>() -> Result<(String, serde_json::Value)> {
    Ok((
        T::EVENT_TYPE.to_owned(),
        serde_json::to_value(T::example())?,
    ))
}

impl Payloads {
    /// `TICKET_UPDATED`, `TICKET_STATUS_CHANGED`, `TICKET_ASSIGNED`, `TICKET_MESSAGE_ADDED`,
    /// `TICKET_TIME_ENTRY_ADDED`.
    pub fn tickets() -> Result<Payloads> {
        let all = [
            example::<TicketUpdated>()?,
            example::<TicketStatusChanged>()?,
            example::<TicketAssigned>()?,
            example::<TicketMessageAdded>()?,
            example::<TicketTimeEntryAdded>()?,
        ];
        let (event_types, payloads) = all.into_iter().unzip();
        Ok(Payloads {
            event_types,
            payloads,
        })
    }

    /// How many event types (and payloads) there are.
    pub fn kinds(&self) -> usize {
        self.event_types.len()
    }

    /// The `i`-th event type and its example payload.
    pub fn get(&self, i: usize) -> Result<(&str, &serde_json::Value)> {
        match (self.event_types.get(i), self.payloads.get(i)) {
            (Some(event_type), Some(payload)) => Ok((event_type, payload)),
            _ => anyhow::bail!("no payload number {i}"),
        }
    }
}

const INSERT_SQL: &str = "
INSERT INTO outbox_events (id, tenant_id, event_type, ordering_key, payload)
SELECT v.id, v.tenant,
       ($5::text[])[1 + g.i % cardinality($5::text[])],
       'ticket:' || v.ticket,
       jsonb_set(jsonb_set(($6::jsonb[])[1 + g.i % cardinality($6::jsonb[])],
                           '{tenantId}', to_jsonb(v.tenant)),
                 '{ticketId}', to_jsonb(v.ticket))
  FROM generate_series($1::bigint, $2::bigint) AS g(i)
 CROSS JOIN LATERAL (
       SELECT CASE WHEN g.i % $4::bigint < $3::bigint THEN -1
                   ELSE (g.i / $4::bigint) % $7::bigint END AS k) AS kk
 CROSS JOIN LATERAL (
       SELECT md5('ticket:' || kk.k)::uuid AS ticket,
              md5('tenant:' || (abs(kk.k) % $8::bigint))::uuid AS tenant,
              -- UUIDv7 layout, as the library writes: milliseconds first, then random bits.
              overlay(overlay(md5($9::text || g.i)
                              PLACING lpad(to_hex($10::bigint + g.i / 64), 12, '0') FROM 1 FOR 12)
                      PLACING '7' FROM 13 FOR 1)::uuid AS id) AS v";

/// How long writing a range took.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Written {
    /// Rows written.
    pub rows: i64,
    /// Wall time of the inserting statements.
    pub seconds: f64,
}

impl Written {
    /// Rows per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Inserts rows `first..=last` (row numbers pick keys, tenants and payloads), in
/// transactions of 100,000 rows, through the insert trigger.
pub async fn insert_range(
    pool: &PgPool,
    payloads: &Payloads,
    first: i64,
    last: i64,
    plan: KeyPlan,
) -> Result<Written> {
    let salt = Uuid::new_v4().simple().to_string();
    let base_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0);
    let started = Instant::now();
    let mut from = first;
    while from <= last {
        let to = (from + CHUNK - 1).min(last);
        sqlx::query(INSERT_SQL)
            .bind(from)
            .bind(to)
            .bind(plan.blocked_num)
            .bind(plan.blocked_den)
            .bind(&payloads.event_types)
            .bind(&payloads.payloads)
            .bind(plan.keys)
            .bind(TENANTS)
            .bind(&salt)
            .bind(base_ms)
            .execute(pool)
            .await?;
        from = to + 1;
    }
    Ok(Written {
        rows: (last - first + 1).max(0),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The state a blocked key's head is brought to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    /// Dead: settled as rejected, its scope held with no due time.
    Dead,
    /// Claimed by another relay and never settled: the head's partition stays leased to
    /// that relay for an hour, with the partition's frontier in front of the head.
    Leased,
    /// Retrying: settled as a failed attempt (one failure), its scope held, due in an hour.
    Retrying,
}

/// Relay id holding the leased head.
pub const OTHER_RELAY: &str = "bench-other-relay";

/// Writes the blocked key's head as row 0 (into an empty table) and brings it to `head`
/// through the relay's own claim and settle. Returns its id.
pub async fn blocked_head(pool: &PgPool, payloads: &Payloads, head: Head) -> Result<Uuid> {
    insert_range(pool, payloads, 0, 0, KeyPlan::blocked()).await?;
    let hour = Duration::from_secs(3600);
    let lease = if head == Head::Leased {
        hour
    } else {
        Duration::from_secs(60)
    };
    let claimed = claim::claim(pool, OTHER_RELAY, 1, lease).await?;
    let id = match claimed.events.as_slice() {
        [event] => event.id,
        _ => anyhow::bail!(
            "expected to claim the blocked head alone, got {}",
            claimed.len()
        ),
    };
    let outcome = match head {
        Head::Leased => return Ok(id),
        Head::Dead => Outcome::Rejected {
            error: "bench: a dead head".to_owned(),
        },
        Head::Retrying => Outcome::Failed {
            error: "bench: a failed attempt".to_owned(),
            retry_in: hour,
        },
    };
    let settled = settle::settle(pool, &claimed, 10, &[(id, outcome)]).await?;
    ensure!(
        settled.dead + settled.retrying == 1,
        "the blocked head was not settled: {settled:?}"
    );
    Ok(id)
}

/// Empties the outbox tables (and restarts `seq`, each partition's frontier with it).
pub async fn truncate(pool: &PgPool) -> Result<()> {
    sqlx::query("TRUNCATE outbox_events, outbox_key_locks, outbox_attempts, outbox_discarded, outbox_held, outbox_gaps, outbox_gap_groups, outbox_replays RESTART IDENTITY")
        .execute(pool)
        .await?;
    sqlx::query(
        "UPDATE outbox_partitions SET frontier = part, token = NULL, owner = NULL,
                relay_id = NULL, leased_until = NULL, claimed = 0",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// `VACUUM ANALYZE` of the outbox tables; returns the seconds it took.
pub async fn vacuum_analyze(pool: &PgPool) -> Result<f64> {
    let started = Instant::now();
    for table in ["outbox_events", "outbox_key_locks"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
            .execute(pool)
            .await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// What the outbox holds, as the relay's tables and the view `outbox_event_status` say, and
/// whether it is consistent with the engine's rules.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableState {
    /// Events the view says are pending (retrying, scheduled and behind held heads included).
    pub pending: i64,
    /// Events the view says are dead.
    pub dead: i64,
    /// Events the view says are delivered (below their partition's frontier, not held).
    pub delivered: i64,
    /// Distinct scopes (ordering keys, each unkeyed event its own) of undelivered events.
    pub keys: i64,
    /// Held scopes whose head is dead (no due time).
    pub held_dead: i64,
    /// Held scopes whose head failed at least once and waits for its next try.
    pub held_retrying: i64,
    /// Held scopes whose head has not failed (not due yet, or released).
    pub held_scheduled: i64,
    /// Events behind a held scope's head (the head itself not counted).
    pub behind_held: i64,
    /// Undelivered events in partitions leased by a relay.
    pub in_leased_partitions: i64,
    /// Partitions with work, as the claim's lease judges it (events after the frontier, a due
    /// held scope or replay, a gap it can resolve).
    pub partitions_with_work: i64,
    /// Of those, the ones free to lease (unleased, or their lease over).
    pub partitions_free_with_work: i64,
    /// Partitions under a lease that has not run out.
    pub partitions_leased: i64,
    /// Rows of `outbox_gaps`.
    pub gaps: i64,
    /// Rows of `outbox_key_locks`.
    pub key_locks: i64,
    /// Held scopes with an undelivered event (not a replay) in front of their head (0 when
    /// every undelivered event of a blocked key lies at or behind its scope's held head).
    pub keys_ahead_of_head: i64,
    /// Held scopes whose head is not an undiscarded event of the scope.
    pub heads_missing: i64,
    /// Keyed events whose `seq` is not in their scope's partition, and held scopes filed
    /// under another partition than their scope's (0 when the trigger drew every `seq` from
    /// its scope's partition).
    pub off_partition: i64,
    /// Size of `outbox_events` with its indexes, MiB.
    pub total_mib: f64,
}

impl TableState {
    /// Every held scope.
    pub fn held(&self) -> i64 {
        self.held_dead + self.held_retrying + self.held_scheduled
    }

    /// Why the state breaks the engine's rules, if it does.
    pub fn inconsistencies(&self) -> Vec<String> {
        let mut found = Vec::new();
        if self.keys_ahead_of_head > 0 {
            found.push(format!(
                "{} held scopes have undelivered events in front of their head",
                self.keys_ahead_of_head
            ));
        }
        if self.heads_missing > 0 {
            found.push(format!(
                "{} held scopes have no event at their head",
                self.heads_missing
            ));
        }
        if self.off_partition > 0 {
            found.push(format!(
                "{} keyed events or held scopes lie outside their scope's partition",
                self.off_partition
            ));
        }
        found
    }
}

/// Counts by status, scopes, events behind held heads and in leased partitions, and the
/// checks of the rules: one scan of the view (a few seconds on a million rows).
const EVENTS_STATE_SQL: &str = "
SELECT count(*) FILTER (WHERE s.status = 'pending'),
       count(*) FILTER (WHERE s.status = 'dead'),
       count(*) FILTER (WHERE s.status = 'delivered'),
       count(DISTINCT COALESCE(s.scope, '#' || s.id::text))
           FILTER (WHERE s.status IN ('pending', 'dead')),
       count(*) FILTER (WHERE h.scope IS NOT NULL AND s.seq > h.head_seq),
       count(*) FILTER (WHERE s.status IN ('pending', 'dead') AND s.leased_by IS NOT NULL),
       count(DISTINCT h.scope)
           FILTER (WHERE s.seq < h.head_seq AND s.status IN ('pending', 'dead')
                     AND NOT EXISTS (SELECT 1 FROM outbox_replays r WHERE r.event_id = s.id)),
       count(*) FILTER (WHERE s.scope IS NOT NULL
                          AND s.seq % 16 <> hashtextextended(s.scope, 0) & 15)
  FROM outbox_event_status s
  LEFT JOIN outbox_held h ON h.scope = s.scope";

/// The held scopes by their head's state, and the heads that are not where the row says:
/// the head is the first undiscarded event of the scope at or after `head_seq`, which must
/// be `head_seq` itself (the settle and `discard` move the row past what is gone).
const HELD_STATE_SQL: &str = "
SELECT count(*) FILTER (WHERE h.due_at IS NULL),
       count(*) FILTER (WHERE h.due_at IS NOT NULL AND COALESCE(a.failures, 0) > 0),
       count(*) FILTER (WHERE h.due_at IS NOT NULL AND COALESCE(a.failures, 0) = 0),
       count(*) FILTER (WHERE e.id IS NULL OR e.seq <> h.head_seq),
       count(*) FILTER (WHERE h.scope NOT LIKE '#%'
                          AND h.part <> hashtextextended(h.scope, 0) & 15)
  FROM outbox_held h
  LEFT JOIN LATERAL (
       SELECT f.id, f.seq FROM outbox_events f
        WHERE h.scope NOT LIKE '#%' AND f.ordering_key IS NOT NULL
          AND outbox_scope(f.tenant_id, f.ordering_key) = h.scope AND f.seq >= h.head_seq
          AND NOT EXISTS (SELECT 1 FROM outbox_discarded x WHERE x.event_id = f.id)
       UNION ALL
       -- An unkeyed event is held on its own, as `#<id>`.
       SELECT f.id, f.seq FROM outbox_events f
        WHERE f.id = CASE WHEN h.scope LIKE '#%' THEN substr(h.scope, 2)::uuid END
          AND NOT EXISTS (SELECT 1 FROM outbox_discarded x WHERE x.event_id = f.id)
        ORDER BY seq LIMIT 1) e ON true
  LEFT JOIN outbox_attempts a ON a.event_id = e.id";

/// The partitions: with work, free to lease (both by the lease's own conditions,
/// `feed::HAS_WORK_SQL` and `feed::IS_FREE_SQL`), leased; and the gaps.
fn partitions_state_sql() -> String {
    format!(
        "SELECT count(*) FILTER (WHERE w.work),
                count(*) FILTER (WHERE w.work AND w.free),
                count(*) FILTER (WHERE NOT w.free),
                (SELECT count(*) FROM outbox_gaps)
           FROM outbox_partitions c
          CROSS JOIN LATERAL (SELECT {} AS work, {} AS free) w",
        feed::HAS_WORK_SQL,
        feed::IS_FREE_SQL
    )
}

/// Reads the outbox's state (a scan of the view and a few index probes: seconds on a
/// million rows).
pub async fn table_state(pool: &PgPool) -> Result<TableState> {
    type Events = (i64, i64, i64, i64, i64, i64, i64, i64);
    let (pending, dead, delivered, keys, behind_held, in_leased_partitions, ahead, off_events): Events =
        sqlx::query_as(EVENTS_STATE_SQL).fetch_one(pool).await?;
    let (held_dead, held_retrying, held_scheduled, heads_missing, off_held): (
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(HELD_STATE_SQL).fetch_one(pool).await?;
    let (partitions_with_work, partitions_free_with_work, partitions_leased, gaps): (
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(sqlx::AssertSqlSafe(partitions_state_sql()))
        .fetch_one(pool)
        .await?;
    let (key_locks, total_mib): (i64, f64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM outbox_key_locks),
                pg_total_relation_size('outbox_events') / 1048576.0::float8",
    )
    .fetch_one(pool)
    .await?;
    Ok(TableState {
        pending,
        dead,
        delivered,
        keys,
        held_dead,
        held_retrying,
        held_scheduled,
        behind_held,
        in_leased_partitions,
        partitions_with_work,
        partitions_free_with_work,
        partitions_leased,
        gaps,
        key_locks,
        keys_ahead_of_head: ahead,
        heads_missing,
        off_partition: off_events + off_held,
        total_mib,
    })
}
