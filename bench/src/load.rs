//! Writing backlogs through the real write path.
//!
//! Rows are inserted with `INSERT ... SELECT FROM generate_series`, so every row goes through
//! `outbox_events_before_insert`: catalog check, the per-key lock in `outbox_key_locks`, `seq`
//! drawn under it, and the `parked` flag. A blocked head is brought to its state by the
//! relay's own `claim` and `settle`. Nothing is set by hand.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use catalog_types::{
    CatalogEvent, TicketAssigned, TicketMessageAdded, TicketStatusChanged, TicketTimeEntryAdded,
    TicketUpdated,
};
use outbox_relay::store::claim;
use outbox_relay::store::settle::{self, Outcome};
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
    /// `dead` (settled as rejected).
    Dead,
    /// Leased by another relay for an hour (claimed, never settled).
    Leased,
    /// Pending, attempts 1, due in an hour (settled as a failed attempt).
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
    sqlx::query("TRUNCATE outbox_events, outbox_key_locks, outbox_key_recheck, outbox_attempts, outbox_discarded, outbox_held, outbox_gaps, outbox_replays RESTART IDENTITY")
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

/// What the table holds, and whether the trigger's bookkeeping is consistent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableState {
    /// Pending rows.
    pub pending: i64,
    /// Dead rows.
    pub dead: i64,
    /// Pending rows that are parked.
    pub parked: i64,
    /// Rows in the ready index (pending, unparked, unleased), due now or later.
    pub ready: i64,
    /// Leased rows.
    pub leased: i64,
    /// Distinct ordering keys of undelivered rows.
    pub keys: i64,
    /// Rows of `outbox_key_locks`.
    pub key_locks: i64,
    /// Keys whose undelivered rows do not have exactly their first row unparked (0 when the
    /// trigger parked every row behind its key's head, and only those).
    pub keys_misparked: i64,
    /// Size of `outbox_events` with its indexes, MiB.
    pub total_mib: f64,
    /// Size of the ready index, MiB.
    pub ready_index_mib: f64,
}

/// Reads the table's state (a few full scans: seconds on a million rows).
pub async fn table_state(pool: &PgPool) -> Result<TableState> {
    let (pending, dead, parked, ready, leased): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE e.status = 'pending' AND a.dead_at IS NULL),
                count(*) FILTER (WHERE e.status = 'pending' AND a.dead_at IS NOT NULL),
                count(*) FILTER (WHERE e.status = 'pending' AND e.parked),
                count(*) FILTER (WHERE e.status = 'pending' AND NOT e.parked),
                (SELECT COALESCE(sum(events), 0)::int8 FROM outbox_leases)
           FROM outbox_events e LEFT JOIN outbox_attempts a ON a.event_id = e.id",
    )
    .fetch_one(pool)
    .await?;
    let (keys, keys_misparked): (i64, i64) = sqlx::query_as(
        "SELECT count(*),
                count(*) FILTER (WHERE unparked > 1 OR (first_parked <> held))
           FROM (SELECT e.ordering_key,
                        count(*) FILTER (WHERE NOT e.parked) AS unparked,
                        (array_agg(e.parked ORDER BY e.seq))[1] AS first_parked,
                        -- A dead or retrying head is parked (its state in outbox_attempts).
                        (array_agg(a.dead_at IS NOT NULL OR a.next_attempt_at IS NOT NULL
                                   ORDER BY e.seq))[1] AS held
                   FROM outbox_events e LEFT JOIN outbox_attempts a ON a.event_id = e.id
                  WHERE e.status = 'pending' AND e.ordering_key IS NOT NULL
                  GROUP BY e.ordering_key) AS k",
    )
    .fetch_one(pool)
    .await?;
    let (key_locks, total_mib, ready_index_mib): (i64, f64, f64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM outbox_key_locks),
                pg_total_relation_size('outbox_events') / 1048576.0::float8,
                pg_relation_size('outbox_events_ready') / 1048576.0::float8",
    )
    .fetch_one(pool)
    .await?;
    Ok(TableState {
        pending,
        dead,
        parked,
        ready,
        leased,
        keys,
        key_locks,
        keys_misparked,
        total_mib,
        ready_index_mib,
    })
}
