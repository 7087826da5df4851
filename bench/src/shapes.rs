//! `claim-shapes`: the cost of one claim on five backlog shapes.
//!
//! For each shape a fresh database is made, `--rows` pending rows are written through the insert
//! trigger (a blocked head first, brought to its state by the relay's claim and settle: a held
//! scope, or a partition another relay keeps leased), and `VACUUM ANALYZE` and a `CHECKPOINT`
//! run. The outbox's state is then read from the relay's tables and the view
//! `outbox_event_status` (pending, dead, held scopes, events behind held heads, partitions
//! with work) and checked against the engine's rules: every undelivered event of a held scope
//! at or behind its head, every keyed event in its scope's partition. Then one untimed claim
//! warms the connection (its statements are prepared, and it writes the full-page images of
//! the pages it touches; its time is reported as `first_ms`) and `--claims` claims of
//! `--batch` are timed one by one (`outbox_relay::store::claim::claim`); after each, the
//! partitions it leased are let go without a settle (untimed), so their frontiers stay and
//! every claim sees the same shape. Claims run on a pool of one connection, like a relay's
//! loop.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use outbox_relay::store::{claim, feed};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::load::{self, Head, KeyPlan, Payloads, TableState, Written};
use crate::steps::{self, Steps};
use crate::summary::{Summary, summarize};
use crate::{Scratch, Server};

/// Flags of `claim-shapes`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pending rows per shape.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Timed claims per shape.
    #[arg(long, default_value_t = 20)]
    claims: usize,
    /// Rows per claim (the relay's `--batch-size`).
    #[arg(long, default_value_t = 500)]
    batch: u32,
    /// Keys of the hot-key shapes (1, and the other keys of 2, 3 and 5).
    #[arg(long, default_value_t = 2_000)]
    keys: i64,
    /// Print `EXPLAIN (ANALYZE, BUFFERS)` of every statement of a claim, per shape (run after
    /// the timed claims, in a transaction that is rolled back).
    #[arg(long)]
    explain: bool,
    /// Only these shapes (1-5, comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u8>,
}

/// One backlog shape.
#[derive(Debug, Clone, Serialize)]
pub struct Shape {
    /// 1 to 5.
    pub number: u8,
    /// Short name.
    pub name: &'static str,
    /// What the backlog holds.
    pub description: String,
    /// The blocked key's head, if the shape has one.
    pub head: Option<Head>,
    /// How the other rows are keyed.
    pub plan: KeyPlan,
}

fn shapes(rows: i64, keys: i64) -> Vec<Shape> {
    vec![
        Shape {
            number: 1,
            name: "hot keys",
            description: format!("{rows} rows interleaved over {keys} keys"),
            head: None,
            plan: KeyPlan::spread(keys),
        },
        Shape {
            number: 2,
            name: "dead head",
            description: format!(
                "a dead head with 90 % of the rows behind it; 10 % on {keys} other keys"
            ),
            head: Some(Head::Dead),
            plan: KeyPlan::mixed(keys, 9, 10),
        },
        Shape {
            number: 3,
            name: "leased head",
            description: format!(
                "a head claimed by another relay and never settled, its partition leased for 1 h, with 50 % of the rows behind it; 50 % on {keys} other keys"
            ),
            head: Some(Head::Leased),
            plan: KeyPlan::mixed(keys, 1, 2),
        },
        Shape {
            number: 4,
            name: "one key per row",
            description: format!("{rows} rows, each its own key"),
            head: None,
            plan: KeyPlan::spread(rows),
        },
        Shape {
            number: 5,
            name: "retrying head",
            description: format!(
                "a head retrying in 1 h (one failure, its scope held) with 50 % of the rows behind it; 50 % on {keys} other keys"
            ),
            head: Some(Head::Retrying),
            plan: KeyPlan::mixed(keys, 1, 2),
        },
    ]
}

/// Plan counts of one of the claim's prepared statements on the timing connection.
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    /// Which statement.
    pub statement: &'static str,
    /// Executions on a generic plan.
    pub generic_plans: i64,
    /// Executions on a custom plan.
    pub custom_plans: i64,
}

/// One statement's plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Which statement.
    pub statement: String,
    /// `EXPLAIN (ANALYZE, BUFFERS)` text.
    pub plan: String,
}

/// The measurements of one shape.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeResult {
    /// The shape.
    pub shape: Shape,
    /// Writing the backlog through the trigger (the blocked head excluded).
    pub written: Written,
    /// `VACUUM ANALYZE` after writing, seconds.
    pub vacuum_seconds: f64,
    /// The outbox before the claims, as the relay's tables and the view say.
    pub state: TableState,
    /// `CHECKPOINT` after the load, seconds.
    pub checkpoint_seconds: f64,
    /// The untimed first claim (statements prepared on the connection, full-page images
    /// written after the checkpoint), ms.
    pub first_ms: f64,
    /// WAL written by the cluster during the first claim, KiB.
    pub first_wal_kib: f64,
    /// The timed claims, ms each, in order.
    pub claim_ms: Vec<f64>,
    /// WAL written by the cluster (all databases: other work included) during each timed
    /// claim, KiB.
    pub claim_wal_kib: Vec<f64>,
    /// When each timed claim started (UTC), to match against the server log's checkpoints.
    pub claim_started_at: Vec<String>,
    /// Their summary.
    pub claim: Summary,
    /// Rows claimed by each timed claim.
    pub rows_claimed: Vec<usize>,
    /// Letting each claim's partitions go again (untimed in `claim_ms`), ms each.
    pub release_ms: Vec<f64>,
    /// The same number of claims again, each step timed by the claim itself (see
    /// `steps.rs`), ms per step.
    pub steps: Vec<Steps>,
    /// Their per-step medians.
    pub step_medians: Steps,
    /// Generic versus custom plans of the claim's statements on the timing connection.
    pub prepared: Vec<Prepared>,
    /// The claim's statements, explained (with `--explain`).
    pub plans: Vec<Plan>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Pending rows per shape.
    pub rows: i64,
    /// Rows per claim.
    pub batch: u32,
    /// Timed claims per shape.
    pub claims: usize,
    /// Server version.
    pub server: String,
    /// `jit` as the server sets it (the claim's transaction turns it off for itself).
    pub server_jit: String,
    /// Per shape.
    pub shapes: Vec<ShapeResult>,
}

/// The relay id of the timed claims.
const RELAY_ID: &str = "bench";

/// The claim's prepared statements by name: the lease, the one-statement read and the
/// counts of most claims, then those of the full read (a due held scope or replay, a gap).
const STATEMENTS: [(&str, &str); 11] = [
    ("lease partitions", feed::ACQUIRE_SQL),
    ("fast read", feed::SEGMENTS_FAST_SQL),
    ("claimed counts", feed::CLAIMED_SQL),
    ("snapshot", feed::SNAPSHOT_SQL),
    ("due replays", feed::REPLAYS_SQL),
    ("due held scopes", feed::DUE_SQL),
    ("gaps", feed::GAPS_SQL),
    ("segments", feed::SEGMENT_SQL),
    ("held scopes read", feed::HELD_SQL),
    ("keyed walk", feed::WALK_KEYED_SQL),
    ("unkeyed walk", feed::WALK_ONE_SQL),
];

/// Runs every (selected) shape.
pub async fn run(args: &Args, server: &Server, keep: bool) -> Result<Report> {
    ensure!(args.rows >= 10, "--rows must be at least 10");
    ensure!(args.claims >= 1, "--claims must be at least 1");
    let payloads = Payloads::tickets()?;
    let mut versions = None;
    let mut results = Vec::new();
    for shape in shapes(args.rows, args.keys) {
        if !args.only.is_empty() && !args.only.contains(&shape.number) {
            continue;
        }
        eprintln!("shape {}: {}", shape.number, shape.description);
        // A fresh database per shape: no statistics, bloat or cached plans of the previous
        // shape (see `docs/benchmarks.md` on the trigger's plan after a TRUNCATE).
        let scratch = server.create(&format!("_shape{}", shape.number)).await?;
        if versions.is_none() {
            let found: (String, String) =
                sqlx::query_as("SELECT current_setting('server_version'), current_setting('jit')")
                    .fetch_one(&scratch.pool)
                    .await?;
            versions = Some(found);
        }
        let result = measure(args, &scratch, &payloads, shape).await;
        server.drop(scratch, keep).await?;
        results.push(result?);
    }
    let (server, server_jit) = versions.unwrap_or_default();
    Ok(Report {
        rows: args.rows,
        batch: args.batch,
        claims: args.claims,
        server,
        server_jit,
        shapes: results,
    })
}

async fn measure(
    args: &Args,
    scratch: &Scratch,
    payloads: &Payloads,
    shape: Shape,
) -> Result<ShapeResult> {
    let pool = &scratch.pool;
    let first = if let Some(head) = shape.head {
        load::blocked_head(pool, payloads, head).await?;
        1
    } else {
        0
    };
    let written = load::insert_range(pool, payloads, first, args.rows - 1, shape.plan).await?;
    eprintln!(
        "  wrote {} rows through the trigger in {:.1} s ({:.0} rows/s)",
        written.rows,
        written.seconds,
        written.rate()
    );
    let vacuum_seconds = load::vacuum_analyze(pool).await?;
    let state = load::table_state(pool).await?;
    eprintln!(
        "  vacuum analyze {vacuum_seconds:.1} s; pending {}, dead {}, keys {}, held scopes {} (dead {}, retrying {}, scheduled {}), behind held heads {}, in leased partitions {}, partitions with work {} ({} free), gaps {}, key locks {}, {:.0} MiB",
        state.pending,
        state.dead,
        state.keys,
        state.held(),
        state.held_dead,
        state.held_retrying,
        state.held_scheduled,
        state.behind_held,
        state.in_leased_partitions,
        state.partitions_with_work,
        state.partitions_free_with_work,
        state.gaps,
        state.key_locks,
        state.total_mib
    );
    let broken = state.inconsistencies();
    ensure!(
        broken.is_empty(),
        "the outbox breaks the engine's rules: {}",
        broken.join("; ")
    );
    let expected = match shape.head {
        Some(Head::Dead) => (1, 0, 0),
        Some(Head::Retrying) => (0, 1, 0),
        Some(Head::Leased) | None => (0, 0, 0),
    };
    ensure!(
        (state.held_dead, state.held_retrying, state.held_scheduled) == expected,
        "expected held scopes (dead, retrying, scheduled) {expected:?}, found ({}, {}, {})",
        state.held_dead,
        state.held_retrying,
        state.held_scheduled
    );
    let leased = i64::from(shape.head == Some(Head::Leased));
    ensure!(
        state.partitions_leased == leased,
        "expected {leased} partitions leased by another relay, found {}",
        state.partitions_leased
    );

    // The load's WAL would otherwise set off checkpoints during the timed claims; after this
    // one, only the warm-up claim writes full-page images of the pages the claims touch.
    let started = Instant::now();
    sqlx::query("CHECKPOINT").execute(pool).await?;
    let checkpoint_seconds = started.elapsed().as_secs_f64();

    // One connection, like a relay's claim loop; its prepared statements are inspected below.
    let claim_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&scratch.url)
        .await?;
    let lease = Duration::from_secs(60);
    let wal_before = wal_position(pool).await?;
    let started = Instant::now();
    let warm = claim::claim(&claim_pool, RELAY_ID, args.batch, lease).await?;
    let first_ms = started.elapsed().as_secs_f64() * 1e3;
    let first_wal_kib = wal_since(pool, &wal_before).await?;
    release(pool, &warm).await?;

    let mut claim_ms = Vec::with_capacity(args.claims);
    let mut claim_wal_kib = Vec::with_capacity(args.claims);
    let mut claim_started_at = Vec::with_capacity(args.claims);
    let mut rows_claimed = Vec::with_capacity(args.claims);
    let mut release_ms = Vec::with_capacity(args.claims);
    for _ in 0..args.claims {
        let wal_before = wal_position(pool).await?;
        claim_started_at.push(chrono::Utc::now().format("%H:%M:%S%.3f").to_string());
        let started = Instant::now();
        let claimed = claim::claim(&claim_pool, RELAY_ID, args.batch, lease).await?;
        claim_ms.push(started.elapsed().as_secs_f64() * 1e3);
        claim_wal_kib.push(wal_since(pool, &wal_before).await?);
        rows_claimed.push(claimed.len());
        let started = Instant::now();
        release(pool, &claimed).await?;
        release_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let claim = summarize(&claim_ms);
    eprintln!(
        "  claim ms: first {first_ms:.1}, min {:.1}, median {:.1}, p95 {:.1}, max {:.1}; rows per claim (median) {}",
        claim.min,
        claim.median,
        claim.p95,
        claim.max,
        summarize(&rows_claimed.iter().map(|&n| n as f64).collect::<Vec<f64>>()).median
    );

    let prepared = prepared_plans(&claim_pool).await?;
    let mut step_times = Vec::with_capacity(args.claims);
    for _ in 0..args.claims {
        let (times, _token, _ids) =
            steps::claim_in_steps(&claim_pool, RELAY_ID, args.batch, lease).await?;
        step_times.push(times);
        // The claim wrote only its partitions' leases: end them, and the next claim reads the
        // same shape again.
        steps::end_leases(pool, RELAY_ID).await?;
    }
    let step_medians = steps::medians(&step_times);
    eprintln!(
        "  step by step (median ms): lease {:.1}, read {:.1}, plan {:.1}, total {:.1}",
        step_medians.acquire, step_medians.read, step_medians.plan, step_medians.total
    );
    let plans = if args.explain {
        claim::explain(&claim_pool, args.batch, steps::partitions_per_claim())
            .await?
            .into_iter()
            .map(|(statement, plan)| Plan { statement, plan })
            .collect()
    } else {
        Vec::new()
    };
    claim_pool.close().await;
    Ok(ShapeResult {
        shape,
        written,
        vacuum_seconds,
        state,
        checkpoint_seconds,
        first_ms,
        first_wal_kib,
        claim_ms,
        claim_wal_kib,
        claim_started_at,
        claim,
        rows_claimed,
        release_ms,
        steps: step_times,
        step_medians,
        prepared,
        plans,
    })
}

async fn wal_position(pool: &PgPool) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(pool)
        .await?)
}

async fn wal_since(pool: &PgPool, position: &str) -> Result<f64> {
    Ok(sqlx::query_scalar(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8 / 1024",
    )
    .bind(position)
    .fetch_one(pool)
    .await?)
}

/// Ends the claim's leases without settling it: its partitions' frontiers stay, so the next
/// claim reads the same shape (a settle of released events would hold their scopes). The
/// lease of the other relay (shape 3) stays.
async fn release(pool: &PgPool, _claimed: &claim::Claim) -> Result<()> {
    crate::steps::end_leases(pool, RELAY_ID).await
}

/// How often the claim's statements ran on generic and custom plans on this pool's one
/// connection (`pg_prepared_statements` is per session).
async fn prepared_plans(claim_pool: &PgPool) -> Result<Vec<Prepared>> {
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
            .fetch_all(claim_pool)
            .await?;
    Ok(STATEMENTS
        .iter()
        .filter_map(|(name, sql)| {
            rows.iter()
                .find(|(text, _, _)| text == sql)
                .map(|(_, generic, custom)| Prepared {
                    statement: name,
                    generic_plans: *generic,
                    custom_plans: *custom,
                })
        })
        .collect())
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "claim-shapes: {} rows per shape, batch {}, {} timed claims per shape (PostgreSQL {}, server jit = {})\n",
        report.rows, report.batch, report.claims, report.server, report.server_jit
    );
    let _ = writeln!(
        out,
        "| # | shape | rows | write via trigger | held scopes | behind held heads | in leased partitions | partitions with work (free) | first claim ms | min ms | median ms | p95 ms | max ms | rows/claim |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in &report.shapes {
        let rows_per_claim = summarize(
            &r.rows_claimed
                .iter()
                .map(|&n| n as f64)
                .collect::<Vec<f64>>(),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} s ({:.0} rows/s) | {} | {} | {} | {} ({}) | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            r.shape.number,
            r.shape.name,
            r.state.pending + r.state.dead,
            r.written.seconds,
            r.written.rate(),
            held_scopes(&r.state),
            r.state.behind_held,
            r.state.in_leased_partitions,
            r.state.partitions_with_work,
            r.state.partitions_free_with_work,
            r.first_ms,
            r.claim.min,
            r.claim.median,
            r.claim.p95,
            r.claim.max,
            rows_per_claim.median
        );
    }
    let _ = writeln!(
        out,
        "\nThe same number of claims again, each step timed by the claim itself (median ms per step):\n"
    );
    let _ = writeln!(
        out,
        "| # | lease partitions | read them (one snapshot) | plan and decode | total |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
    for r in &report.shapes {
        let m = &r.step_medians;
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.shape.number, m.acquire, m.read, m.plan, m.total
        );
    }
    let _ = writeln!(out);
    for r in &report.shapes {
        let _ = writeln!(
            out,
            "shape {} ({}): {}",
            r.shape.number, r.shape.name, r.shape.description
        );
        let _ = writeln!(
            out,
            "  pending {}, dead {}, delivered {}, scopes with undelivered events {}, gaps {}; table {:.0} MiB, key locks {}, vacuum analyze {:.1} s",
            r.state.pending,
            r.state.dead,
            r.state.delivered,
            r.state.keys,
            r.state.gaps,
            r.state.total_mib,
            r.state.key_locks,
            r.vacuum_seconds
        );
        let samples: Vec<String> = r.claim_ms.iter().map(|ms| format!("{ms:.1}")).collect();
        let _ = writeln!(out, "  claim ms: {}", samples.join(" "));
        let wal: Vec<String> = r.claim_wal_kib.iter().map(|k| format!("{k:.0}")).collect();
        let _ = writeln!(
            out,
            "  cluster WAL per claim, KiB: {} (first claim after the checkpoint: {:.1} ms, {:.0} KiB)",
            wal.join(" "),
            r.first_ms,
            r.first_wal_kib
        );
        if let (Some(first), Some(last)) = (r.claim_started_at.first(), r.claim_started_at.last()) {
            let _ = writeln!(out, "  timed claims from {first} to {last} UTC");
        }
        let prepared: Vec<String> = r
            .prepared
            .iter()
            .map(|p| {
                format!(
                    "{} {} generic/{} custom",
                    p.statement, p.generic_plans, p.custom_plans
                )
            })
            .collect();
        let _ = writeln!(out, "  plans used: {}", prepared.join("; "));
        for plan in &r.plans {
            let text: Vec<String> = plan.plan.lines().map(abridge).collect();
            let _ = writeln!(out, "\n  -- {}\n{}", plan.statement, text.join("\n"));
        }
        let _ = writeln!(out);
    }
    out
}

/// The held scopes by their head's state ("none" when there are none).
fn held_scopes(state: &TableState) -> String {
    let parts: Vec<String> = [
        (state.held_dead, "dead"),
        (state.held_retrying, "retrying"),
        (state.held_scheduled, "scheduled"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// A plan line with its array literals (the 500 ids a lease binds) shortened to a count.
fn abridge(line: &str) -> String {
    let mut out = String::with_capacity(line.len().min(300));
    let mut rest = line;
    while let Some(start) = rest.find("'{") {
        let Some(len) = rest[start..].find("}'") else {
            break;
        };
        let inner = &rest[start + 2..start + len];
        out.push_str(&rest[..start]);
        if inner.len() > 60 {
            let _ = write!(out, "'{{... {} values ...}}'", inner.split(',').count());
        } else {
            out.push_str(&rest[start..start + len + 2]);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::abridge;

    #[test]
    fn long_arrays_become_counts() {
        let ids = ["01a21bd4-3b08-7afc-3184-9fb311d893c9"; 3].join(",");
        let line = format!("Index Cond: (id = ANY ('{{{ids}}}'::uuid[]))");
        assert_eq!(
            abridge(&line),
            "Index Cond: (id = ANY ('{... 3 values ...}'::uuid[]))"
        );
        let short = "Filter: (id = ANY ('{}'::uuid[]))";
        assert_eq!(abridge(short), short);
    }
}
