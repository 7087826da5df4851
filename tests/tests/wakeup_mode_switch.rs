//! Switching the wake-up mode under writers and running relays: a switch never holds
//! writers back for long, a no-op switch takes no lock, refusals say why, relays follow the
//! mode, and per-key order holds while it flips.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use catalog_types::{CatalogEvent, TicketUpdated};
use integration_tests::{
    RunningRelay, TestDb, relay_binary, relay_cli, relay_config, wait_until_settled,
    with_db_and_broker,
};
use outbox_core::EmitOptions;
use uuid::Uuid;

fn ticket_event(ticket: Uuid) -> TicketUpdated {
    TicketUpdated {
        tenant_id: integration_tests::TEST_TENANT, // one scope per ticket
        ticket_id: ticket,
        ..TicketUpdated::example()
    }
}

async fn mode(db: &TestDb) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT outbox_wakeup_mode()")
        .fetch_one(&db.pool)
        .await?)
}

/// A writer transaction left open: `wakeup notify` retries for 10 s, then gives up with a
/// message that says writers kept the table busy; a writer arriving meanwhile is held back
/// for at most one 200 ms attempt (it used to stall until the switch gave up, 4 s here).
#[tokio::test]
async fn switch_with_a_long_writer_times_out_and_stalls_writers() -> Result<()> {
    let db = TestDb::new().await?;
    let mut long = db.connect().await?;
    let mut long_tx = sqlx::Connection::begin(&mut long).await?;
    outbox_core::emit(&mut long_tx, &ticket_event(Uuid::now_v7())).await?;

    let started = Instant::now();
    let cli = {
        let db_url = db.url();
        tokio::spawn(async move {
            let out = tokio::process::Command::new(relay_binary()?)
                .args(["wakeup", "notify"])
                .env("DATABASE_URL", db_url)
                .env("RUST_LOG", "warn")
                .output()
                .await?;
            anyhow::Ok((
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
                started.elapsed(),
            ))
        })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // A new writer, unrelated key.
    let w_started = Instant::now();
    let pool = db.pool.clone();
    let writer = tokio::spawn(async move {
        let mut tx = pool.begin().await?;
        outbox_core::emit(&mut tx, &ticket_event(Uuid::now_v7())).await?;
        tx.commit().await?;
        anyhow::Ok(w_started.elapsed())
    });
    let (code, stdout, stderr, cli_took) = cli.await??;
    let writer_took = writer.await??;
    eprintln!(
        "cli: code {code} after {cli_took:?}\nstdout: {stdout}\nstderr: {stderr}\nwriter stalled {writer_took:?}"
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(cli_took >= Duration::from_secs(4) && cli_took < Duration::from_secs(15));
    assert!(stderr.contains("lock timeout"), "{stderr}");
    assert!(stderr.contains("writers kept the table"), "{stderr}");
    assert!(
        writer_took < Duration::from_secs(2),
        "a writer stalled {writer_took:?} behind the switch"
    );
    assert!(
        !stderr.contains("is the schema migrated"),
        "misleading hint on a lock timeout: {stderr}"
    );
    assert_eq!(mode(&db).await?, "poll");
    long_tx.commit().await?;
    drop(long);
    db.cleanup().await
}

/// A role that may write events but does not own the table gets a clear refusal.
#[tokio::test]
async fn switch_by_a_non_owner_is_refused_clearly() -> Result<()> {
    let db = TestDb::new().await?;
    let role = format!("outbox_rv2_{}", integration_tests::unique_suffix());
    for sql in [
        format!("CREATE ROLE {role} LOGIN PASSWORD 'pw'"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&db.pool)
            .await?;
    }
    let mut url = url::Url::parse(&db.url())?;
    url.set_username(&role).unwrap();
    url.set_password(Some("pw")).unwrap();
    let out = tokio::process::Command::new(relay_binary()?)
        .args(["wakeup", "notify"])
        .env("DATABASE_URL", url.as_str())
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let out_read = tokio::process::Command::new(relay_binary()?)
        .args(["wakeup"])
        .env("DATABASE_URL", url.as_str())
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    eprintln!(
        "non-owner set: code {:?}\n{stderr}\nnon-owner read: code {:?} {}",
        out.status.code(),
        out_read.status.code(),
        String::from_utf8_lossy(&out_read.stdout)
    );
    let pool_url = url.to_string();
    let result = async {
        // The non-owner can still write events by plain SQL in poll mode.
        let mut conn: sqlx::PgConnection =
            <sqlx::PgConnection as sqlx::Connection>::connect(&pool_url).await?;
        sqlx::query(
            "INSERT INTO outbox_events (event_type, tenant_id, payload)
             VALUES ('TICKET_CREATED', gen_random_uuid(), '{}')",
        )
        .execute(&mut conn)
        .await?;
        anyhow::Ok(())
    }
    .await;
    db.cleanup().await?;
    let admin: sqlx::postgres::PgConnectOptions = integration_tests::database_url().parse()?;
    let mut conn = sqlx::ConnectOptions::connect(&admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&mut conn)
        .await?;
    result?;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("must be owner"), "{stderr}");
    assert!(
        !stderr.contains("is the schema migrated"),
        "misleading hint for a permission error: {stderr}"
    );
    Ok(())
}

/// Latency of one event written now, until the relay marks it delivered.
async fn latency(db: &TestDb) -> Result<Duration> {
    let id = integration_tests::emit_ticket(&db.pool, Uuid::now_v7(), EmitOptions::new()).await?;
    let started = Instant::now();
    loop {
        let status: String =
            sqlx::query_scalar("SELECT status FROM outbox_event_status WHERE id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await?;
        if status == "delivered" {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("not delivered in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Notify → poll and back, with a running relay polling at most every 5 s when idle: an
/// event written after the switch back to notify is not left to the poll (generous bound
/// for a busy machine; in poll mode the same events wait for the poll).
#[tokio::test]
async fn relay_follows_mode_switches_promptly() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        sqlx::query("SELECT outbox_set_wakeup_mode('notify')")
            .execute(&db.pool)
            .await?;
        let mut config = relay_config(db, broker);
        config.poll_interval = Duration::from_secs(5);
        let relay = RunningRelay::start(config);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut steady = Vec::new();
        for _ in 0..5 {
            steady.push(latency(db).await?);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        eprintln!("notify steady: {steady:?}");

        sqlx::query("SELECT outbox_set_wakeup_mode('poll')")
            .execute(&db.pool)
            .await?;
        let mut after_poll = Vec::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(12) {
            // Let the relay go idle first (an event soon after a claim finds it polling fast).
            tokio::time::sleep(Duration::from_millis(1100)).await;
            after_poll.push(latency(db).await?);
        }
        eprintln!("after switch to poll: {after_poll:?}");

        sqlx::query("SELECT outbox_set_wakeup_mode('notify')")
            .execute(&db.pool)
            .await?;
        let mut after_notify = Vec::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(12) {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            after_notify.push(latency(db).await?);
        }
        eprintln!("after switch to notify: {after_notify:?}");
        relay.stop().await?;
        let worst_poll = after_poll.iter().max().copied().unwrap();
        let worst_notify = after_notify.iter().max().copied().unwrap();
        assert!(worst_notify < Duration::from_secs(2), "{after_notify:?}");
        eprintln!("worst after poll switch {worst_poll:?} (poll ceiling 5 s: idle poll-mode latency is by design up to it)");
        Ok(())
    })
    .await
}

/// Several writers on a few keys with overlapping transactions in poll mode, while the
/// mode is flipped back and forth: every committed event is delivered once, in seq order
/// per key, and no writer fails.
#[tokio::test]
async fn overlapping_writers_keep_per_key_order_while_the_mode_flips() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let config = relay_config(db, broker);
        let relay = RunningRelay::start(config);
        let tickets: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let stop = tokio_util::sync::CancellationToken::new();
        let flipper = {
            let pool = db.pool.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut flips = 0u32;
                let mut failures = Vec::new();
                while !stop.is_cancelled() {
                    let m = if flips.is_multiple_of(2) {
                        "notify"
                    } else {
                        "poll"
                    };
                    let t = Instant::now();
                    match sqlx::query("SELECT outbox_set_wakeup_mode($1)")
                        .bind(m)
                        .execute(&pool)
                        .await
                    {
                        Ok(_) => {}
                        Err(e) => failures.push(format!("{e} after {:?}", t.elapsed())),
                    }
                    flips += 1;
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                (flips, failures)
            })
        };
        let mut writers = Vec::new();
        for w in 0..8u64 {
            let pool = db.pool.clone();
            let tickets = tickets.clone();
            writers.push(tokio::spawn(async move {
                let mut committed = Vec::new();
                let mut worst = Duration::ZERO;
                for i in 0..40u64 {
                    let t = Instant::now();
                    let mut tx = pool.begin().await?;
                    let key = tickets[((w + i) % 3) as usize];
                    let a = outbox_core::emit(&mut tx, &ticket_event(key)).await?;
                    tokio::time::sleep(Duration::from_millis((w * 7 + i * 3) % 5)).await;
                    let b = outbox_core::emit(&mut tx, &ticket_event(key)).await?;
                    if i % 10 == 9 {
                        tx.rollback().await?;
                    } else {
                        tx.commit().await?;
                        committed.push(a);
                        committed.push(b);
                    }
                    worst = worst.max(t.elapsed());
                }
                anyhow::Ok((committed, worst))
            }));
        }
        let mut ids = Vec::new();
        let mut worst = Duration::ZERO;
        for w in writers {
            let (c, t) = w.await??;
            ids.extend(c);
            worst = worst.max(t);
        }
        stop.cancel();
        let (flips, failures) = flipper.await?;
        eprintln!("flips {flips}, failed flips {failures:?}, worst writer txn {worst:?}");
        wait_until_settled(&db.pool, &ids, Duration::from_secs(60)).await?;
        let received = broker
            .collect(ids.len() + 10, Duration::from_secs(3))
            .await?;
        relay.stop().await?;
        let seq_of: HashMap<String, (String, i64)> = sqlx::query_as::<_, (Uuid, String, i64)>(
            "SELECT id, ordering_key, seq FROM outbox_events WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&db.pool)
        .await?
        .into_iter()
        .map(|(id, k, s)| (id.to_string(), (k, s)))
        .collect();
        assert_eq!(received.len(), ids.len(), "every committed event once");
        let mut last: HashMap<String, i64> = HashMap::new();
        for m in &received {
            let (k, s) = seq_of.get(&m.message_id).expect("a committed id");
            let prev = last.insert(k.clone(), *s).unwrap_or(i64::MIN);
            assert!(*s > prev, "key {k}: seq {s} after {prev}");
        }
        let _ = TicketUpdated::EVENT_TYPE;
        let (code, out, err) = relay_cli(db, &["wakeup"]).await?;
        eprintln!("final mode: {code} {out} {err}");
        Ok(())
    })
    .await
}

/// Setting the mode the database already has takes no lock: with a writer open it succeeds
/// at once (deploy scripts may set the mode on every run).
#[tokio::test]
async fn setting_the_current_mode_with_a_long_writer() -> Result<()> {
    let db = TestDb::new().await?;
    assert_eq!(mode(&db).await?, "poll");
    let mut long = db.connect().await?;
    let mut long_tx = sqlx::Connection::begin(&mut long).await?;
    outbox_core::emit(&mut long_tx, &ticket_event(Uuid::now_v7())).await?;
    let t = Instant::now();
    let (code, stdout, stderr) = relay_cli(&db, &["wakeup", "poll"]).await?;
    let took = t.elapsed();
    eprintln!("no-op `wakeup poll`: code {code} in {took:?}: {stdout}{stderr}");
    long_tx.commit().await?;
    drop(long);
    db.cleanup().await?;
    assert_eq!(code, 0, "a no-op switch should not fail: {stderr}");
    assert!(
        took < Duration::from_secs(2),
        "a no-op switch waited {took:?}"
    );
    Ok(())
}
