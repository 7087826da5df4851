//! What the partitioned `seq` (engine v3, step 4a) promises a reader of the outbox: each of
//! the 16 partitions (`seq % 16`) hands out the progression `p, p + 16, p + 32, ...`, a
//! scope always lands in one partition, and a writer has its transaction id before it
//! draws. A reader that follows each partition from a frontier, notes the seqs missing
//! below what it saw (*gaps*: writers still open, or rolled back) and settles a gap once
//! the oldest running transaction is younger than a transaction id assigned after the
//! snapshot that saw it, then reads
//! every committed event exactly once, each scope in order, whatever the writers do:
//! overlapping transactions on one scope, rollbacks, savepoints rolled back, inserts that a
//! dedupe conflict turns into nothing, transactions left open for a while.
//!
//! The reader here decides as the partitioned claim does (`engine::feed_claim::plan`, see
//! docs/delivery-engine.md, "Step 4b, designed"), with its state in memory: what the relay
//! will keep in `outbox_partitions` and `outbox_gaps`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use integration_tests::TestDb;
use outbox_relay::engine::feed_claim::{self, FeedRow, GapGroupRead, PartitionRead};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::{PgPool, Row};
use tokio::sync::Mutex;
use uuid::Uuid;

/// Partitions of the outbox (`seq % 16`).
const PARTITIONS: i64 = 16;

/// An event as the reader got it.
#[derive(Debug, Clone)]
struct Read {
    id: Uuid,
    seq: i64,
    scope: Option<String>,
}

/// One writer: transactions (half of them with a transaction id from their start, as after
/// a business write) of one to three events, over a few scopes of two tenants and
/// unkeyed events, some rolled back, some with a savepoint rolled back, some left open for
/// a while, some whose dedupe key conflicts (the row is not written, its seq is drawn).
async fn writer(
    pool: PgPool,
    seed: u64,
    scopes: Arc<Vec<(Uuid, String)>>,
    until: Instant,
) -> Result<Vec<Uuid>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut committed = Vec::new();
    let insert =
        "INSERT INTO outbox_events (event_type, payload, tenant_id, ordering_key, dedupe_key)
                  VALUES ('TICKET_UPDATED', $1, $2, $3, $4)
                  ON CONFLICT DO NOTHING RETURNING id";
    while Instant::now() < until {
        let mut tx = pool.begin().await?;
        // Half the writers change a business row first: they have a transaction id before
        // they draw, older than that of writers who begin after them but draw first.
        if rng.random_bool(0.5) {
            sqlx::query("SELECT pg_current_xact_id()")
                .execute(&mut *tx)
                .await?;
            if rng.random_bool(0.5) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
            }
        }
        let mut mine = Vec::new();
        let n = rng.random_range(1..=3);
        for i in 0..n {
            let (tenant, key) = if rng.random_bool(0.2) {
                (None, None)
            } else {
                let (tenant, key) = &scopes[rng.random_range(0..scopes.len())];
                (Some(*tenant), Some(key.clone()))
            };
            // A dedupe key that exists already: no row, but a seq drawn.
            let dedupe = if rng.random_bool(0.05) {
                "taken".to_owned()
            } else {
                Uuid::new_v4().to_string()
            };
            let savepoint = i > 0 && rng.random_bool(0.1);
            if savepoint {
                sqlx::query("SAVEPOINT s").execute(&mut *tx).await?;
            }
            let inserted = sqlx::query_scalar(insert)
                .bind(json!({"ticketId": Uuid::now_v7(), "updatedFields": ["status"]}))
                .bind(tenant)
                .bind(&key)
                .bind(&dedupe)
                .fetch_optional(&mut *tx)
                .await;
            // Two writers locking two scopes in opposite orders: PostgreSQL aborts one, as
            // for any deadlock (the library's batches lock in one order; plain SQL may not).
            let id: Option<Uuid> = match inserted {
                Err(e)
                    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("40P01") =>
                {
                    mine.clear();
                    break;
                }
                other => other?,
            };
            if savepoint {
                sqlx::query("ROLLBACK TO SAVEPOINT s")
                    .execute(&mut *tx)
                    .await?;
            } else if let Some(id) = id {
                mine.push(id);
            }
            if rng.random_bool(0.05) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(20..300))).await;
            }
        }
        if mine.is_empty() || rng.random_bool(0.15) {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
            committed.extend(mine);
        }
    }
    Ok(committed)
}

/// Where the reader stands in one partition.
#[derive(Debug)]
struct Cursor {
    /// Every seq of the partition up to here was read, or is a gap.
    frontier: i64,
    /// Gaps: missing seqs below the frontier, each with a transaction id assigned after the
    /// snapshot that saw it (every writer that could still commit it has a smaller one).
    gaps: BTreeMap<i64, u64>,
}

/// The columns a claim reads of an event: seq, id, its scope's name (`#<id>` unkeyed).
const ROW: &str =
    "seq, id, COALESCE(outbox_scope(tenant_id, ordering_key), '#' || id::text) AS scope";

fn feed_row(row: &sqlx::postgres::PgRow) -> Result<FeedRow> {
    Ok(FeedRow {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        scope: row.try_get("scope")?,
        not_before: None,
    })
}

/// One round of the reader over partition `p`, in one snapshot: it reads the segment after
/// the frontier and the gaps, and the claim's own decision ([`feed_claim::plan`]) says what
/// goes out, where the frontier moves, and which gaps are noted or forgotten. Returns what
/// it read, in the order a relay would publish it.
async fn read_round(pool: &PgPool, p: i64, cursor: &mut Cursor, limit: i64) -> Result<Vec<Read>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let xmin: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(&mut *tx)
            .await?;
    let gap_seqs: Vec<i64> = cursor.gaps.keys().copied().collect();
    let visible = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ROW} FROM outbox_events WHERE seq = ANY($1)"
    )))
    .bind(&gap_seqs)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(feed_row)
    .collect::<Result<Vec<_>>>()?;
    let segment = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ROW} FROM outbox_events
          WHERE seq % 16 = $1 AND seq > $2
          ORDER BY seq LIMIT $3"
    )))
    .bind(p)
    .bind(cursor.frontier)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(feed_row)
    .collect::<Result<Vec<_>>>()?;
    // A transaction id assigned now, after the snapshot: the id the relay's settle notes
    // its gaps with.
    let noted: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    ensure!(
        segment.iter().all(|r| feed_claim::partition_of(r.seq) == p),
        "a row off partition {p}"
    );

    // Every gap group read in full (the relay reads only the groups a transaction that
    // could fill them has left since; reading all of them is what it may skip).
    let mut groups: BTreeMap<u64, Vec<FeedRow>> = cursor
        .gaps
        .values()
        .map(|noted| (*noted, Vec::new()))
        .collect();
    for row in visible {
        if let Some(noted) = cursor.gaps.get(&row.seq) {
            groups.entry(*noted).or_default().push(row);
        }
    }
    let groups = groups
        .into_iter()
        .map(|(noted_xid, mut rows)| {
            rows.sort_by_key(|r| r.seq);
            GapGroupRead { noted_xid, rows }
        })
        .collect();
    let taken = feed_claim::take_gaps(groups, false, usize::MAX);
    ensure!(taken.complete, "every group read in full");
    let read = PartitionRead {
        part: p,
        frontier: cursor.frontier,
        segment,
        gaps: taken.rows,
        gap_groups: taken.groups,
        held: Vec::new(),
        walks: Vec::new(),
    };
    let plan = feed_claim::plan(&read);
    for seq in &plan.forget_gaps {
        cursor.gaps.remove(seq);
    }
    // A group read in full is forgotten once no transaction it waits for runs: the relay
    // keeps those running when it was noted (every one older than its settle) and narrows
    // them to those still running; here, once the oldest running transaction is younger
    // than the settle.
    let xmin = u64::try_from(xmin)?;
    cursor
        .gaps
        .retain(|_, noted| !(plan.read_groups.contains(noted) && xmin >= *noted));
    for seq in &plan.new_gaps {
        cursor.gaps.insert(*seq, u64::try_from(noted)?);
    }
    cursor.frontier = plan.frontier;
    Ok(plan
        .publish
        .into_iter()
        .map(|r| Read {
            id: r.id,
            seq: r.seq,
            scope: (!r.scope.starts_with('#')).then_some(r.scope),
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_of_the_partitions_gets_every_committed_event_once_in_scope_order() -> Result<()> {
    let db = TestDb::new().await?;
    // The conflicting dedupe key exists for every tenant the writers use, and unkeyed.
    let tenants = [Uuid::now_v7(), Uuid::now_v7()];
    let mut scopes = Vec::new();
    for (i, tenant) in tenants.iter().enumerate() {
        for k in 0..6 {
            scopes.push((*tenant, format!("ticket:{i}-{k}")));
        }
    }
    for tenant in tenants.iter().map(Some).chain([None]) {
        sqlx::query(
            "INSERT INTO outbox_events (event_type, payload, tenant_id, dedupe_key)
             VALUES ('TICKET_UPDATED', $1, $2, 'taken')",
        )
        .bind(json!({"ticketId": Uuid::now_v7(), "updatedFields": ["status"]}))
        .bind(tenant)
        .execute(&db.pool)
        .await?;
    }
    let seeded: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM outbox_events")
        .fetch_all(&db.pool)
        .await?;
    let scopes = Arc::new(scopes);

    // The reader runs while the writers write: two of them, eight partitions each.
    let writing = Arc::new(AtomicBool::new(true));
    let received = Arc::new(Mutex::new(Vec::<Read>::new()));
    let mut readers = Vec::new();
    for half in 0..2_i64 {
        let pool = db.pool.clone();
        let writing = writing.clone();
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let mut cursors: Vec<(i64, Cursor)> = (0..8)
                .map(|i| {
                    let p = half * 8 + i;
                    (
                        p,
                        Cursor {
                            frontier: p - PARTITIONS,
                            gaps: BTreeMap::new(),
                        },
                    )
                })
                .collect();
            // After the writers stop, read until a round finds nothing and no gap is open.
            loop {
                let done = !writing.load(Ordering::SeqCst);
                let mut got = 0;
                for (p, cursor) in &mut cursors {
                    let read = read_round(&pool, *p, cursor, 20).await?;
                    got += read.len();
                    received.lock().await.extend(read);
                }
                if done && got == 0 && cursors.iter().all(|(_, c)| c.gaps.is_empty()) {
                    return anyhow::Ok(());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let until = Instant::now() + Duration::from_secs(6);
    let mut writers = Vec::new();
    for w in 0..6 {
        writers.push(tokio::spawn(writer(
            db.pool.clone(),
            0x5EED + w,
            scopes.clone(),
            until,
        )));
    }
    let mut committed = Vec::new();
    for w in writers {
        committed.extend(w.await??);
    }
    writing.store(false, Ordering::SeqCst);
    for r in readers {
        r.await??;
    }
    let received = received.lock().await.clone();

    // Every committed event exactly once (and the seeded ones), nothing else.
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for r in &received {
        *counts.entry(r.id).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(twice.is_empty(), "read more than once: {twice:?}");
    let expected: BTreeSet<Uuid> = committed.iter().chain(&seeded).copied().collect();
    let got: BTreeSet<Uuid> = counts.keys().copied().collect();
    let missed: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    ensure!(
        missed.is_empty() && extra.is_empty(),
        "{} committed, {} read; missed {missed:?}, not committed {extra:?}",
        expected.len(),
        got.len()
    );
    ensure!(
        committed.len() > 200,
        "too few events written: {}",
        committed.len()
    );

    // Each scope in seq order, in one partition: its hash's.
    let mut last: HashMap<String, i64> = HashMap::new();
    for r in &received {
        let Some(scope) = &r.scope else { continue };
        let previous = last.insert(scope.clone(), r.seq);
        ensure!(
            previous.is_none_or(|p| p < r.seq),
            "scope {scope}: seq {} read after {previous:?}",
            r.seq
        );
    }
    for (tenant, key) in scopes.iter() {
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT seq % 16 FROM outbox_events WHERE tenant_id = $1 AND ordering_key = $2",
        )
        .bind(tenant)
        .bind(key)
        .fetch_all(&db.pool)
        .await?;
        ensure!(seqs.len() <= 1, "{tenant}/{key} spans partitions {seqs:?}");
    }
    db.cleanup().await
}

/// The interleaving that a snapshot's `xmax` would get wrong: writer A has the older
/// transaction id (a business write first) but draws after writer B, commits first, and B
/// stays open past the reader's rounds. B's event must still be read once B commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_whose_writer_is_younger_than_the_last_commit_is_kept_until_it_ends() -> Result<()> {
    let db = TestDb::new().await?;
    let tenant = Uuid::now_v7();
    // Two keys of one tenant in one partition.
    let (k1, k2): (String, String) = sqlx::query_as(
        "SELECT a.k, b.k FROM
           (SELECT 'ticket:' || g AS k FROM generate_series(1, 64) g) a,
           (SELECT 'ticket:' || g AS k FROM generate_series(1, 64) g) b
          WHERE a.k < b.k
            AND hashtextextended(outbox_scope($1, a.k), 0) & 15
                = hashtextextended(outbox_scope($1, b.k), 0) & 15
          LIMIT 1",
    )
    .bind(tenant)
    .fetch_one(&db.pool)
    .await?;
    let insert = "INSERT INTO outbox_events (event_type, payload, tenant_id, ordering_key)
                  VALUES ('TICKET_UPDATED', $1, $2, $3) RETURNING id, seq";
    let payload = json!({"ticketId": Uuid::now_v7(), "updatedFields": ["status"]});

    let mut a = db.pool.begin().await?;
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *a)
        .await?;
    let mut b = db.pool.begin().await?;
    let (b_id, v): (Uuid, i64) = sqlx::query_as(insert)
        .bind(&payload)
        .bind(tenant)
        .bind(&k1)
        .fetch_one(&mut *b)
        .await?;
    let (a_id, w): (Uuid, i64) = sqlx::query_as(insert)
        .bind(&payload)
        .bind(tenant)
        .bind(&k2)
        .fetch_one(&mut *a)
        .await?;
    a.commit().await?;
    ensure!(w > v && w % 16 == v % 16, "{v} then {w} in one partition");

    let part = v % 16;
    let mut cursor = Cursor {
        frontier: part - PARTITIONS,
        gaps: BTreeMap::new(),
    };
    let mut read = Vec::new();
    for _ in 0..3 {
        read.extend(read_round(&db.pool, part, &mut cursor, 20).await?);
    }
    ensure!(
        read.iter().map(|r| r.id).collect::<Vec<_>>() == vec![a_id],
        "only A's event is visible: {read:?}"
    );
    ensure!(
        cursor.gaps.contains_key(&v),
        "B's seq is kept as a gap while B runs"
    );
    b.commit().await?;
    for _ in 0..2 {
        read.extend(read_round(&db.pool, part, &mut cursor, 20).await?);
    }
    ensure!(
        read.iter().map(|r| r.id).collect::<Vec<_>>() == vec![a_id, b_id],
        "B's event is read once B commits: {read:?}"
    );
    // (The other gaps — the seqs before the first drawn — are forgotten once every
    // transaction older than the reader's has ended, in any database of the server: other
    // tests may keep that from happening here.)
    db.cleanup().await
}
