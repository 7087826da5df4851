//! The `outbox-relay` binary as operators run it: SIGTERM drains, SIGKILL loses nothing,
//! HTTP endpoints report health and metrics, and logs never show passwords.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::{
    RelayProcess, TestBroker, TestDb, amqp_url, count_status, emit_tickets, id_set, log_path,
    metric, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_drain_exits_zero_and_leaves_no_lease() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let ids = emit_tickets(&db.pool, 20_000, 500).await?;
    let log = log_path("sigterm");
    let mut relay = RelayProcess::start(&db, &broker, &["--shutdown-timeout", "10s"], &log)?;
    wait_until(Duration::from_secs(30), "some deliveries", || async {
        Ok(count_status(&db.pool, "delivered").await? > 500)
    })
    .await?;

    relay.signal("TERM").await?;
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(15), relay.child.wait()).await??;
    let took = started.elapsed();
    assert!(
        status.success(),
        "exit status {status:?}; log: {}",
        std::fs::read_to_string(&log)?
    );
    assert!(took < Duration::from_secs(10), "drain took {took:?}");
    let leased: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox_partitions WHERE token IS NOT NULL")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(leased, 0, "no row stays leased after a graceful stop");

    // Nothing was lost: a new relay delivers the rest.
    let mut relay = RelayProcess::start(&db, &broker, &[], &log)?;
    let (seen, _) = broker
        .received_ids(ids.len(), Duration::from_secs(30))
        .await?;
    assert_eq!(seen, id_set(&ids));
    relay.signal("TERM").await?;
    relay.child.wait().await?;
    broker.cleanup().await?;
    let _ = std::fs::remove_file(&log);
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_then_restart_delivers_everything() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let ids = emit_tickets(&db.pool, 20_000, 2_000).await?;
    let log = log_path("sigkill");
    let lease = [
        "--lease",
        "4s",
        "--confirm-timeout",
        "1s",
        "--publish-timeout",
        "1s",
    ];
    let mut relay = RelayProcess::start(&db, &broker, &lease, &log)?;
    wait_until(Duration::from_secs(30), "some deliveries", || async {
        Ok(count_status(&db.pool, "delivered").await? > 1_000)
    })
    .await?;
    relay.signal("KILL").await?;
    relay.child.wait().await?;
    let delivered_at_kill = count_status(&db.pool, "delivered").await?;
    assert!(
        delivered_at_kill < 20_000,
        "the kill came too late to test anything"
    );

    let mut relay = RelayProcess::start(&db, &broker, &lease, &log)?;
    wait_until(Duration::from_secs(60), "every row delivered", || async {
        Ok(count_status(&db.pool, "delivered").await? == 20_000)
    })
    .await?;
    let (seen, messages) = broker.received_ids(25_000, Duration::from_secs(3)).await?;
    assert_eq!(
        seen,
        id_set(&ids),
        "every event arrives; duplicates only as redeliveries of the same id"
    );
    eprintln!(
        "killed after {delivered_at_kill} deliveries; {messages} messages for {} events ({} redelivered)",
        ids.len(),
        messages - ids.len()
    );
    relay.signal("TERM").await?;
    relay.child.wait().await?;
    broker.cleanup().await?;
    let _ = std::fs::remove_file(&log);
    db.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_report_health_and_metrics_and_logs_hide_passwords() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let ids = emit_tickets(&db.pool, 1_500, 100).await?;
    let log = log_path("metrics");
    let mut relay = RelayProcess::start(&db, &broker, &["--log-format", "json"], &log)?;
    wait_until(Duration::from_secs(30), "readiness", || async {
        Ok(relay
            .get("/readyz")
            .await
            .map(|(code, _)| code == 200)
            .unwrap_or(false))
    })
    .await?;
    assert_eq!(relay.get("/healthz").await?.0, 200);
    wait_until(
        Duration::from_secs(30),
        "published = events and backlog = 0",
        || async {
            let (_, text) = relay.get("/metrics").await?;
            Ok(
                metric(&text, "outbox_published_total") == Some(ids.len() as f64)
                    && metric(&text, "outbox_pending_backlog") == Some(0.0),
            )
        },
    )
    .await?;
    let (_, text) = relay.get("/metrics").await?;
    for name in [
        "outbox_oldest_pending_age_seconds",
        "outbox_batch_size_events_count",
        "outbox_publish_confirm_seconds_count",
        "outbox_end_to_end_lag_seconds_count",
        "outbox_dead_events",
        "outbox_in_flight_events",
        "outbox_blocked_keys",
        "outbox_blocked_events",
    ] {
        assert!(
            metric(&text, name).is_some(),
            "{name} missing from /metrics:\n{text}"
        );
    }
    relay.signal("TERM").await?;
    relay.child.wait().await?;

    let logs = std::fs::read_to_string(&log)?;
    let password = url::Url::parse(&amqp_url())?
        .password()
        .unwrap_or("guest")
        .to_owned();
    assert!(logs.contains("relay started"), "{logs}");
    assert!(
        !logs.contains(&format!(":{password}@")),
        "a password leaked into the logs:\n{logs}"
    );
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .map_err(|e| anyhow::anyhow!("not JSON: {line}: {e}"))?;
    }
    broker.cleanup().await?;
    let _ = std::fs::remove_file(&log);
    db.cleanup().await
}

#[tokio::test]
async fn bad_flags_and_urls_are_refused_with_their_names() -> Result<()> {
    let binary = integration_tests::relay_binary()?;
    // Each invocation must fail (or print help) at once; a hang is a failure too.
    let run = |args: &[&str]| {
        let description = format!("{args:?}");
        let mut command = tokio::process::Command::new(&binary);
        command
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("AMQP_URL")
            .kill_on_drop(true);
        async move {
            tokio::time::timeout(Duration::from_secs(20), command.output())
                .await
                .map_err(|_| anyhow::anyhow!("outbox-relay {description} did not exit"))?
                .map_err(anyhow::Error::from)
        }
    };
    let out = run(&["run", "--amqp-url", "amqp://user:hunter2@[::1"]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--amqp-url") && !stderr.contains("hunter2"),
        "{stderr}"
    );

    let out = run(&[
        "run",
        "--database-url",
        "mysql://user:hunter2@db/x",
        "--http-addr",
        "127.0.0.1:0",
    ])
    .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--database-url") && !stderr.contains("hunter2"),
        "{stderr}"
    );

    let out = run(&["run", "--batch-size", "0"]).await?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch-size"));

    let out = run(&["run", "--poll-interval", "soon"]).await?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("--poll-interval"));

    for args in [
        &["--help"][..],
        &["migrate", "--help"],
        &["run", "--help"],
        &["catalog", "--help"],
    ] {
        let out = run(args).await?;
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
    Ok(())
}
