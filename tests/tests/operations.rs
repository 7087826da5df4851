//! Operator commands against the real services: replay, dry runs, hostile filters, purge
//! under load, status alerts, inspect.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Result;
use catalog_types::{CatalogEvent, InvoiceGenerated, TicketUpdated};
use integration_tests::{
    RunningRelay, TestBroker, TestDb, count_status, emit_tickets, make_dead, relay_cli,
    relay_config, snapshot, wait_until,
};
use uuid::Uuid;

fn invoice(tenant: Uuid) -> InvoiceGenerated {
    InvoiceGenerated {
        tenant_id: tenant,
        invoice_id: Uuid::now_v7(),
        ..InvoiceGenerated::example()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_events_are_replayed_once_a_binding_exists_with_their_original_ids() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["tickets.#"]).await?;
    let tenant = Uuid::now_v7();
    let mut conn = db.pool.acquire().await?;
    let mut dead = Vec::new();
    for _ in 0..5 {
        dead.push(outbox_core::emit(&mut conn, &invoice(tenant)).await?);
    }
    drop(conn);
    let mut config = relay_config(&db, &broker);
    config.max_attempts = 2;
    let relay = RunningRelay::start(config);
    wait_until(Duration::from_secs(30), "five dead events", || async {
        Ok(count_status(&db.pool, "dead").await? == 5)
    })
    .await?;

    broker.bind("billing.#").await?;
    let (code, stdout, stderr) = relay_cli(
        &db,
        &[
            "replay",
            "--status",
            "dead",
            "--event-type",
            "INVOICE_GENERATED",
            "--actor",
            "ops-test",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("replayed 5 event(s)"), "{stdout}");

    let received = broker.collect(5, Duration::from_secs(20)).await?;
    let ids: HashSet<String> = received.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(
        ids,
        dead.iter().map(ToString::to_string).collect::<HashSet<_>>()
    );
    assert!(
        received
            .iter()
            .all(|m| m.headers.get("x-attempt").map(String::as_str) == Some("1"))
    );
    wait_until(Duration::from_secs(10), "all delivered", || async {
        Ok(count_status(&db.pool, "delivered").await? == 5)
    })
    .await?;
    let (actor, count): (String, i32) =
        sqlx::query_as("SELECT actor, event_count FROM outbox_replay_audit")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!((actor.as_str(), count), ("ops-test", 5));
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_events_of_one_tenant_in_a_window_are_replayed_and_others_untouched() -> Result<()>
{
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let (tenant_a, tenant_b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut conn = db.pool.acquire().await?;
    let mut a_ids = Vec::new();
    for _ in 0..4 {
        a_ids.push(outbox_core::emit(&mut conn, &invoice(tenant_a)).await?);
        outbox_core::emit(&mut conn, &invoice(tenant_b)).await?;
    }
    // An old event of tenant A, outside the window.
    let old = outbox_core::emit(&mut conn, &invoice(tenant_a)).await?;
    sqlx::query("UPDATE outbox_events SET created_at = now() - interval '3 days' WHERE id = $1")
        .bind(old)
        .execute(&mut *conn)
        .await?;
    drop(conn);
    let relay = RunningRelay::start(relay_config(&db, &broker));
    assert_eq!(broker.collect(9, Duration::from_secs(20)).await?.len(), 9);
    wait_until(Duration::from_secs(10), "delivered", || async {
        Ok(count_status(&db.pool, "delivered").await? == 9)
    })
    .await?;
    let before: Vec<(Uuid, String, i32)> = sqlx::query_as(
        "SELECT id, status, attempts FROM outbox_event_status WHERE NOT (id = ANY($1)) ORDER BY id",
    )
    .bind(&a_ids)
    .fetch_all(&db.pool)
    .await?;

    let tenant = tenant_a.to_string();
    let (code, stdout, stderr) = relay_cli(
        &db,
        &[
            "replay",
            "--status",
            "delivered",
            "--tenant",
            &tenant,
            "--since",
            "1h",
            "--format",
            "json",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["count"], 4);

    let again = broker.collect(4, Duration::from_secs(20)).await?;
    let ids: HashSet<String> = again.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(
        ids,
        a_ids
            .iter()
            .map(ToString::to_string)
            .collect::<HashSet<_>>()
    );
    wait_until(Duration::from_secs(10), "re-delivered", || async {
        Ok(count_status(&db.pool, "delivered").await? == 9)
    })
    .await?;
    let after: Vec<(Uuid, String, i32)> = sqlx::query_as(
        "SELECT id, status, attempts FROM outbox_event_status WHERE NOT (id = ANY($1)) ORDER BY id",
    )
    .bind(&a_ids)
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(
        before, after,
        "other tenants and the old event are untouched"
    );
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}

#[tokio::test]
async fn dry_runs_and_hostile_filters_change_nothing() -> Result<()> {
    let db = TestDb::new().await?;
    let tenant = Uuid::now_v7();
    let mut conn = db.pool.acquire().await?;
    for _ in 0..6 {
        outbox_core::emit(&mut conn, &invoice(tenant)).await?;
    }
    drop(conn);
    let every: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM outbox_events")
        .fetch_all(&db.pool)
        .await?;
    make_dead(&db.pool, &every, 10, Some("unroutable")).await?;
    let before = snapshot(&db.pool).await?;

    let (code, stdout, stderr) = relay_cli(&db, &["replay", "--all", "--dry-run"]).await?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("would replay 6 event(s)"), "{stdout}");
    assert_eq!(snapshot(&db.pool).await?, before, "--dry-run changed rows");

    let long = "x".repeat(100_000);
    let refused: [(&[&str], &str); 7] = [
        (&["replay"], "refusing to replay without a filter"),
        (
            &[
                "replay",
                "--event-type",
                "INVOICE_GENERATED'; DROP TABLE outbox_events; --",
            ],
            "--event-type",
        ),
        (
            &[
                "replay",
                "--category",
                "Billing\"; DELETE FROM outbox_events",
            ],
            "--category",
        ),
        (&["replay", "--tenant", "not-a-uuid"], "--tenant"),
        (&["replay", "--id", "1 OR 1=1"], "--id"),
        (&["replay", "--since", "last tuesday"], "--since"),
        (&["replay", "--ordering-key", &long], "--ordering-key"),
    ];
    for (args, expected) in refused {
        let (code, _, stderr) = relay_cli(&db, args).await?;
        assert_ne!(code, 0, "{args:?} was accepted");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // Hostile but well-formed values simply match nothing: nothing to do (exit code 3).
    for key in ["' OR '1'='1", "invoice:%", "*; TRUNCATE outbox_events"] {
        let (code, stdout, stderr) = relay_cli(&db, &["replay", "--ordering-key", key]).await?;
        assert_eq!(code, 3, "{stderr}");
        assert!(
            stdout.contains("nothing to replay: no dead event matched the filter"),
            "{key}: {stdout}"
        );
    }
    assert_eq!(
        snapshot(&db.pool).await?,
        before,
        "a refused or empty replay changed rows"
    );
    // Only the dry run is recorded, as one.
    let audits: Vec<(bool, i32)> =
        sqlx::query_as("SELECT dry_run, event_count FROM outbox_replay_audit")
            .fetch_all(&db.pool)
            .await?;
    assert_eq!(audits, vec![(true, 6)]);
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_100k_delivered_rows_does_not_stall_the_relay() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let tenant = Uuid::now_v7();
    let template = serde_json::to_value(TicketUpdated {
        tenant_id: tenant,
        ..TicketUpdated::example()
    })?;
    sqlx::query(
        "INSERT INTO outbox_events (event_type, schema_ref, category, tenant_id, ordering_key, payload,
                                    created_at)
         SELECT 'TICKET_UPDATED', 'payload.TicketUpdated.v1', 'Tickets', $1, 'ticket:' || (g % 1000),
                $2, now() - interval '8 days'
           FROM generate_series(1, 100000) AS g",
    )
    .bind(tenant)
    .bind(&template)
    .execute(&db.pool)
    .await?;
    // Delivered (the relay's state, set as the relay would have: an insert cannot set it).
    integration_tests::mark_delivered(&db.pool, &[], None).await?;
    // Rows purge must leave alone: a dead one, and an old pending one far in the future.
    let dead = outbox_core::emit(&mut *db.pool.acquire().await?, &invoice(tenant)).await?;
    sqlx::query("UPDATE outbox_events SET created_at = now() - interval '30 days' WHERE id = $1")
        .bind(dead)
        .execute(&db.pool)
        .await?;
    make_dead(&db.pool, &[dead], 10, None).await?;
    let parked = outbox_core::emit_with(
        &mut *db.pool.acquire().await?,
        &invoice(tenant),
        outbox_core::EmitOptions::new().delay(Duration::from_secs(86_400)),
    )
    .await?;

    let (code, stdout, _) = relay_cli(&db, &["purge", "--dry-run"]).await?;
    assert_eq!(code, 0);
    assert!(stdout.contains("would delete 100000 delivered"), "{stdout}");

    let relay = RunningRelay::start(relay_config(&db, &broker));
    let purge = tokio::spawn({
        let db_url = db.url();
        async move {
            let pool = sqlx::PgPool::connect(&db_url).await?;
            let started = Instant::now();
            let deleted = outbox_relay::store::purge::purge(
                &pool,
                outbox_relay::store::purge::Purgeable::Delivered,
                Duration::from_secs(7 * 86_400),
                1000,
            )
            .await?;
            anyhow::Ok((deleted, started.elapsed()))
        }
    });
    // Keep producing while the purge runs; each event must be delivered promptly.
    let mut worst = Duration::ZERO;
    let mut produced = 0;
    while !purge.is_finished() || produced < 20 {
        let started = Instant::now();
        let ids = emit_tickets(&db.pool, 1, 1).await?;
        let id = ids[0];
        wait_until(
            Duration::from_secs(10),
            "a live event during the purge",
            || async {
                let status: String =
                    sqlx::query_scalar("SELECT status FROM outbox_event_status WHERE id = $1")
                        .bind(id)
                        .fetch_one(&db.pool)
                        .await?;
                Ok(status == "delivered")
            },
        )
        .await?;
        worst = worst.max(started.elapsed());
        produced += 1;
    }
    let (deleted, took) = purge.await??;
    eprintln!(
        "purged {deleted} rows in {took:?}; {produced} live events delivered meanwhile, slowest {worst:?}"
    );
    assert_eq!(deleted, 100_000);
    assert!(
        worst < Duration::from_secs(5),
        "a live event waited {worst:?} during the purge"
    );
    let left: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, status FROM outbox_event_status WHERE id = ANY($1) ORDER BY status",
    )
    .bind(vec![dead, parked])
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(
        left,
        vec![(dead, "dead".to_owned()), (parked, "pending".to_owned())]
    );
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_alerts_on_stale_pending_events_and_inspect_shows_the_row() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let id = outbox_core::emit(&mut *db.pool.acquire().await?, &invoice(Uuid::now_v7())).await?;
    sqlx::query("UPDATE outbox_events SET created_at = now() - interval '1 minute' WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;

    let (code, stdout, stderr) = relay_cli(&db, &["status", "--max-lag", "1s"]).await?;
    assert_ne!(code, 0, "a minute-old pending event must alert: {stdout}");
    assert!(stderr.contains("ALERT"), "{stderr}");
    assert!(
        stdout.contains("pending") && stdout.contains("INVOICE_GENERATED"),
        "{stdout}"
    );

    let (code, stdout, stderr) = relay_cli(&db, &["inspect", &id.to_string()]).await?;
    assert_eq!(code, 0, "{stderr}");
    let row: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(row["id"], serde_json::json!(id));
    assert_eq!(row["eventType"], "INVOICE_GENERATED");
    assert!(row["payload"].is_object() && row["headers"].is_object());
    let (code, _, stderr) = relay_cli(&db, &["inspect", &Uuid::now_v7().to_string()]).await?;
    assert_ne!(code, 0);
    assert!(stderr.contains("no event with id"), "{stderr}");

    let relay = RunningRelay::start(relay_config(&db, &broker));
    wait_until(Duration::from_secs(20), "delivery", || async {
        Ok(count_status(&db.pool, "delivered").await? == 1)
    })
    .await?;
    let (code, stdout, stderr) =
        relay_cli(&db, &["status", "--max-lag", "1s", "--format", "json"]).await?;
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["pending"], 0);
    assert_eq!(report["delivered"], 1);
    assert!(report["lastDeliveredAt"].is_string());
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}

#[tokio::test]
async fn purge_inbox_deletes_only_old_records() -> Result<()> {
    let db = TestDb::new().await?;
    let mut tx = db.pool.begin().await?;
    for n in 0..10 {
        outbox_core::inbox::record(&mut tx, "billing", &format!("m{n}")).await?;
    }
    tx.commit().await?;
    sqlx::query("UPDATE outbox_inbox SET processed_at = now() - interval '40 days' WHERE message_id IN ('m0','m1','m2')")
        .execute(&db.pool)
        .await?;
    let (code, stdout, stderr) =
        relay_cli(&db, &["purge", "--inbox", "--older-than", "30d"]).await?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("deleted 3 inbox records"), "{stdout}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_inbox")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(left, 7);
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_retention_purges_old_delivered_rows_by_itself() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let old = emit_tickets(&db.pool, 50, 5).await?;
    let fresh = emit_tickets(&db.pool, 5, 5).await?;
    integration_tests::mark_delivered(&db.pool, &old, Some(Duration::from_secs(10 * 86_400)))
        .await?;
    let mut config = relay_config(&db, &broker);
    config.retention = Some(Duration::from_secs(7 * 86_400));
    let relay = RunningRelay::start(config);
    wait_until(
        Duration::from_secs(20),
        "old rows purged and fresh ones delivered",
        || async {
            let total: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_events")
                .fetch_one(&db.pool)
                .await?;
            Ok(total == fresh.len() as i64
                && count_status(&db.pool, "delivered").await? == fresh.len() as i64)
        },
    )
    .await?;
    relay.stop().await?;
    broker.cleanup().await?;
    db.cleanup().await
}

/// A discarded event stays replayable for the retention counted from its discard, not from
/// when it was written; `inspect` shows when it was discarded.
#[tokio::test]
async fn retention_of_a_discarded_event_counts_from_its_discard() -> Result<()> {
    use outbox_relay::store::purge::{Purgeable, purge};
    let db = TestDb::new().await?;
    let tenant = Uuid::now_v7();
    let id = outbox_core::emit(&mut *db.pool.acquire().await?, &invoice(tenant)).await?;
    // Written a month ago, dead, discarded now.
    sqlx::query("UPDATE outbox_events SET created_at = now() - interval '30 days' WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    make_dead(&db.pool, &[id], 10, None).await?;
    let (code, out, err) =
        relay_cli(&db, &["discard", "--id", &id.to_string(), "--actor", "t"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    let week = Duration::from_secs(7 * 86_400);
    assert_eq!(purge(&db.pool, Purgeable::Discarded, week, 100).await?, 0);
    let (code, out, err) = relay_cli(&db, &["inspect", &id.to_string()]).await?;
    assert_eq!(code, 0, "{out}{err}");
    let row: serde_json::Value = serde_json::from_str(&out)?;
    assert!(row["discardedAt"].is_string(), "{row}");

    // Eight days after the discard it goes, with its discard time.
    sqlx::query(
        "UPDATE outbox_discarded SET discarded_at = now() - interval '8 days' WHERE event_id = $1",
    )
    .bind(id)
    .execute(&db.pool)
    .await?;
    assert_eq!(purge(&db.pool, Purgeable::Discarded, week, 100).await?, 1);
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM outbox_events) + (SELECT count(*) FROM outbox_discarded)",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(left, 0);

    // A replayed discarded event is no longer counted as discarded.
    let again = outbox_core::emit(&mut *db.pool.acquire().await?, &invoice(tenant)).await?;
    make_dead(&db.pool, &[again], 10, None).await?;
    let again_id = again.to_string();
    for command in [
        &["discard", "--id", &again_id, "--actor", "t"][..],
        &[
            "replay",
            "--status",
            "discarded",
            "--id",
            &again_id,
            "--actor",
            "t",
        ],
    ] {
        let (code, out, err) = relay_cli(&db, command).await?;
        assert_eq!(code, 0, "{command:?}: {out}{err}");
    }
    let status: String = sqlx::query_scalar("SELECT status FROM outbox_event_status WHERE id = $1")
        .bind(again)
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(status, "pending");
    let discarded: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_discarded")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(discarded, 0);
    db.cleanup().await
}

/// `audit` after a dry-run replay, a replay and a discard: who, when, which events, dry run
/// or not, the database role; every filter; JSON that parses.
#[tokio::test]
async fn audit_lists_replays_dry_runs_and_discards_and_filters_them() -> Result<()> {
    let db = TestDb::new().await?;
    let (tenant_a, tenant_b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut conn = db.pool.acquire().await?;
    let inv1 = outbox_core::emit(&mut conn, &invoice(tenant_a)).await?;
    let inv2 = outbox_core::emit(&mut conn, &invoice(tenant_a)).await?;
    let ticket = TicketUpdated {
        tenant_id: tenant_b,
        ..TicketUpdated::example()
    };
    let tick = outbox_core::emit(&mut conn, &ticket).await?;
    drop(conn);
    let every: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM outbox_events")
        .fetch_all(&db.pool)
        .await?;
    make_dead(&db.pool, &every, 10, Some("unroutable")).await?;
    let role: String = sqlx::query_scalar("SELECT session_user::text")
        .fetch_one(&db.pool)
        .await?;

    let cli = |args: &'static [&'static str], extra: Vec<String>| {
        let db = &db;
        async move {
            let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            all.extend(extra);
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            relay_cli(db, &all).await
        }
    };
    let (code, stdout, stderr) = cli(
        &[
            "replay",
            "--dry-run",
            "--event-type",
            "INVOICE_GENERATED",
            "--actor",
            "carol",
        ],
        vec![],
    )
    .await?;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("would replay 2 event(s)") && stdout.contains("(dry run)"),
        "{stdout}"
    );
    let (code, _, stderr) = cli(
        &["replay", "--actor", "alice", "--id"],
        vec![inv1.to_string()],
    )
    .await?;
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = cli(
        &["discard", "--actor", "bob", "--id"],
        vec![tick.to_string()],
    )
    .await?;
    assert_eq!(code, 0, "{stderr}");

    // The table: newest first, one line per record.
    let (code, stdout, stderr) = cli(&["audit"], vec![]).await?;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("database  "), "{stdout}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [
            "ID", "RECORDED", "AT", "ACTION", "DRY", "RUN", "ACTOR", "ROLE", "EVENTS", "FILTER",
            "EVENT", "IDS"
        ],
        "{stdout}"
    );
    let rows = &lines[2..];
    assert_eq!(rows.len(), 3, "{stdout}");
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    for (row, (action, dry_run, actor, events)) in rows.iter().zip([
        ("discard", "no", "bob", vec![tick]),
        ("replay", "no", "alice", vec![inv1]),
        ("replay", "yes", "carol", vec![inv1, inv2]),
    ]) {
        let words = words(row);
        assert_eq!(
            (&words[2][..], &words[3][..], &words[4][..], &words[5][..]),
            (action, dry_run, actor, role.as_str()),
            "{stdout}"
        );
        assert!(
            chrono::DateTime::parse_from_rfc3339(&words[1]).is_ok(),
            "{stdout}"
        );
        assert_eq!(words[6], events.len().to_string(), "{stdout}");
        for id in events {
            assert!(row.contains(&id.to_string()), "{stdout}");
        }
    }
    assert!(
        rows[2].contains("--status dead --event-type INVOICE_GENERATED"),
        "{stdout}"
    );

    // JSON: every record whole.
    let (code, stdout, stderr) = cli(&["audit", "--format", "json"], vec![]).await?;
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["more"], false);
    assert_eq!(report["database"], db.url().as_str());
    let records = report["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), 3, "{report}");
    assert_eq!(records[0]["action"], "discard");
    assert_eq!(records[0]["actor"], "bob");
    assert_eq!(records[0]["dryRun"], false);
    assert_eq!(records[0]["sessionRole"], role.as_str());
    assert_eq!(records[0]["eventIds"], serde_json::json!([tick]));
    assert!(records[0]["recordedAt"].is_string());
    assert_eq!(records[2]["dryRun"], true);
    assert_eq!(records[2]["eventCount"], 2);
    assert_eq!(records[2]["eventIds"], serde_json::json!([inv1, inv2]));
    assert_eq!(
        records[2]["filter"]["filter"]["eventType"],
        "INVOICE_GENERATED"
    );

    // Filters: the actors of the records each one selects, newest first.
    sqlx::query(
        "UPDATE outbox_replay_audit SET replayed_at = now() - interval '2 days' WHERE actor = 'carol'",
    )
    .execute(&db.pool)
    .await?;
    let day_ago = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let actors = |args: Vec<String>| {
        let db = &db;
        async move {
            let mut all = vec!["audit".to_owned(), "--format".to_owned(), "json".to_owned()];
            all.extend(args);
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            let (code, stdout, stderr) = relay_cli(db, &all).await?;
            anyhow::ensure!(code == 0, "{all:?}: {stderr}");
            let report: serde_json::Value = serde_json::from_str(&stdout)?;
            anyhow::Ok(
                report["records"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|r| r["actor"].as_str().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>(),
            )
        }
    };
    let s = |items: &[&str]| items.iter().map(|i| (*i).to_owned()).collect::<Vec<_>>();
    for (args, expected) in [
        (s(&["--action", "discard"]), s(&["bob"])),
        (s(&["--action", "replay"]), s(&["alice", "carol"])),
        (s(&["--actor", "alice"]), s(&["alice"])),
        (s(&["--dry-runs-only"]), s(&["carol"])),
        (s(&["--changes-only"]), s(&["bob", "alice"])),
        (
            vec!["--id".to_owned(), inv1.to_string()],
            s(&["alice", "carol"]),
        ),
        (vec!["--id".to_owned(), inv2.to_string()], s(&["carol"])),
        (
            s(&["--event-type", "invoice_generated"]),
            s(&["alice", "carol"]),
        ),
        (s(&["--category", "tickets"]), s(&["bob"])),
        (
            vec!["--tenant".to_owned(), tenant_b.to_string()],
            s(&["bob"]),
        ),
        (s(&["--role", role.as_str()]), s(&["bob", "alice", "carol"])),
        (s(&["--role", "nobody"]), s(&[])),
        (s(&["--since", "1d"]), s(&["bob", "alice"])),
        (vec!["--until".to_owned(), day_ago.clone()], s(&["carol"])),
        (s(&["--since", "3d", "--until", "1d"]), s(&["carol"])),
        (s(&["--limit", "1"]), s(&["bob"])),
        (
            s(&[
                "--action",
                "replay",
                "--changes-only",
                "--event-type",
                "INVOICE_GENERATED",
            ]),
            s(&["alice"]),
        ),
    ] {
        assert_eq!(actors(args.clone()).await?, expected, "{args:?}");
    }
    let (_, stdout, _) = cli(&["audit", "--limit", "1"], vec![]).await?;
    assert!(stdout.contains("... and older records"), "{stdout}");
    let (code, stdout, _) = cli(&["audit", "--role", "nobody"], vec![]).await?;
    assert_eq!(code, 0);
    assert!(stdout.contains("no audit record matched"), "{stdout}");

    // Malformed values are refused by flag; conflicting flags are a usage error.
    for (args, flag, expected_code) in [
        (&["audit", "--since", "last tuesday"][..], "--since", 1),
        (
            &["audit", "--event-type", "NOPE_NOT_A_TYPE"],
            "--event-type",
            1,
        ),
        (
            &["audit", "--since", "1h", "--until", "2h"],
            "--since/--until",
            1,
        ),
        (&["audit", "--actor", "a\u{1b}[2J"], "--actor", 1),
        (
            &["audit", "--changes-only", "--dry-runs-only"],
            "--dry-runs-only",
            2,
        ),
        (&["audit", "--limit", "0"], "--limit", 2),
    ] {
        let (code, _, stderr) = relay_cli(&db, args).await?;
        assert_eq!(code, expected_code, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    db.cleanup().await
}

/// `discard` and `replay` that change nothing exit 3 and say why; nothing is recorded.
#[tokio::test]
async fn a_replay_or_discard_of_nothing_exits_3_and_says_why() -> Result<()> {
    let db = TestDb::new().await?;
    let tenant = Uuid::now_v7();
    let delivered = outbox_core::emit(&mut *db.pool.acquire().await?, &invoice(tenant)).await?;
    integration_tests::mark_delivered(&db.pool, &[delivered], None).await?;
    let id = delivered.to_string();
    let unknown = Uuid::now_v7().to_string();
    for (args, expected) in [
        (
            vec!["discard", "--id", id.as_str()],
            format!("nothing to discard: event {id} is delivered (discard takes dead events only)"),
        ),
        (
            vec!["discard", "--id", id.as_str(), "--dry-run"],
            format!("nothing to discard: event {id} is delivered (discard takes dead events only)"),
        ),
        (
            vec!["replay", "--id", id.as_str()],
            format!(
                "nothing to replay: event {id} is delivered (replay takes one status at a time: add --status delivered)"
            ),
        ),
        (
            vec!["replay", "--id", unknown.as_str()],
            format!("nothing to replay: no event has the id {unknown}"),
        ),
        (
            vec!["replay", "--event-type", "COMPANY_CREATED"],
            "nothing to replay: no dead event matched the filter".to_owned(),
        ),
        (
            vec!["discard", "--all"],
            "nothing to discard: no dead event matched the filter".to_owned(),
        ),
        (
            vec!["replay", "--status", "discarded", "--all", "--dry-run"],
            "nothing to replay: no discarded event matched the filter".to_owned(),
        ),
    ] {
        let (code, stdout, stderr) = relay_cli(&db, &args).await?;
        assert_eq!(code, 3, "{args:?}: {stdout}{stderr}");
        assert!(stdout.contains(&expected), "{args:?}: {stdout}");
        assert!(!stdout.contains("0 event(s)"), "{args:?}: {stdout}");
    }
    let (code, stdout, stderr) =
        relay_cli(&db, &["discard", "--id", &id, "--format", "json"]).await?;
    assert_eq!(code, 3, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["count"], 0);
    assert_eq!(
        report["nothingToDo"],
        format!("event {id} is delivered (discard takes dead events only)")
    );
    // The same event replayed as what it is: done, exit 0.
    let (code, stdout, stderr) = relay_cli(
        &db,
        &["replay", "--status", "delivered", "--id", &id, "--dry-run"],
    )
    .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("would replay 1 event(s)"), "{stdout}");
    let changes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox_replay_audit WHERE NOT dry_run")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(changes, 0);
    db.cleanup().await
}

/// `inspect` prints its fields in the documented order, whatever order the database keeps
/// them in; `status` keeps its blocked-keys table aligned with long, non-ASCII keys.
#[tokio::test]
async fn inspect_prints_fields_in_a_fixed_order_and_status_cuts_long_keys() -> Result<()> {
    let db = TestDb::new().await?;
    let tenant = Uuid::now_v7();
    let key = "заказ-".repeat(40);
    let options = outbox_core::EmitOptions::new()
        .ordering_key(key.clone())
        .header("x-zeta", "last")
        .header("x-alpha", "first");
    let id =
        outbox_core::emit_with(&mut *db.pool.acquire().await?, &invoice(tenant), options).await?;
    let behind = outbox_core::emit_with(
        &mut *db.pool.acquire().await?,
        &invoice(Uuid::now_v7()),
        outbox_core::EmitOptions::new().ordering_key("short-key"),
    )
    .await?;
    make_dead(
        &db.pool,
        &[id, behind],
        10,
        Some("unroutable: no queue bound for billing.invoice_generated"),
    )
    .await?;
    // A second event behind the long key's head, so the key shows as blocked.
    outbox_core::emit_with(
        &mut *db.pool.acquire().await?,
        &invoice(tenant),
        outbox_core::EmitOptions::new().ordering_key(key.clone()),
    )
    .await?;

    let (code, stdout, stderr) = relay_cli(&db, &["inspect", &id.to_string()]).await?;
    assert_eq!(code, 0, "{stderr}");
    let row: serde_json::Value = serde_json::from_str(&stdout)?;
    let keys: Vec<&str> = row
        .as_object()
        .map(|fields| fields.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, outbox_relay::ops::inspect::FIELDS, "{stdout}");
    assert_eq!(row["status"], "dead");
    assert_eq!(row["orderingKey"], key.as_str());
    assert_eq!(row["headers"]["x-zeta"], "last");
    let at = |field: &str| {
        stdout
            .find(&format!("\n  \"{field}\""))
            .unwrap_or(usize::MAX)
    };
    assert!(
        at("id") < at("status")
            && at("status") < at("attempts")
            && at("attempts") < at("lastError")
            && at("lastError") < at("eventType")
            && at("eventType") < at("payload"),
        "{stdout}"
    );

    let (code, stdout, stderr) = relay_cli(&db, &["status"]).await?;
    assert_eq!(code, 0, "{stderr}");
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|line| !line.starts_with("ORDERING KEY"))
        .take_while(|line| !line.is_empty())
        .collect();
    assert!(table.len() >= 2, "{stdout}");
    let head_column =
        |line: &str, what: &str| line.find(what).map(|byte| line[..byte].chars().count());
    let header_at = head_column(table[0], "HEAD EVENT");
    let long_line = table
        .iter()
        .find(|line| line.contains(&id.to_string()))
        .copied()
        .unwrap_or_default();
    assert!(
        long_line.starts_with("заказ-заказ-") && long_line.contains('…'),
        "{stdout}"
    );
    assert!(!long_line.contains(&key), "the key is cut: {stdout}");
    assert_eq!(
        head_column(long_line, &id.to_string()),
        header_at,
        "{stdout}"
    );
    db.cleanup().await
}

/// `--help` names each environment variable as `[env: NAME]`: never its value, never a
/// stray `=` when it is unset.
#[test]
fn help_names_environment_variables_without_their_values() -> Result<()> {
    let binary = integration_tests::relay_binary()?;
    for set in [false, true] {
        for page in [
            &[] as &[&str],
            &["run"],
            &["replay"],
            &["discard"],
            &["audit"],
            &["status"],
            &["inspect"],
            &["purge"],
            &["migrate"],
            &["wakeup"],
        ] {
            let mut command = std::process::Command::new(&binary);
            command.args(page).arg("--help");
            command
                .env_remove("OUTBOX_LOG_FORMAT")
                .env_remove("OUTBOX_EXCHANGE");
            if set {
                command
                    .env("OUTBOX_LOG_FORMAT", "json")
                    .env("OUTBOX_EXCHANGE", "value-of-the-variable")
                    .env("OUTBOX_ACTOR", "value-of-the-variable");
            }
            let output = command.output()?;
            assert!(output.status.success(), "{page:?}");
            let help = String::from_utf8(output.stdout)?;
            assert!(
                help.contains("[env: OUTBOX_LOG_FORMAT]"),
                "{page:?}: {help}"
            );
            assert!(!help.contains("=]"), "{page:?} (set: {set}): {help}");
            assert!(!help.contains("value-of-the-variable"), "{page:?}: {help}");
        }
    }
    Ok(())
}
