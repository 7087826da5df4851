//! What a new user or an operator meets first: health that names the server at fault,
//! errors that say what to do, one consistent CLI (exit codes, camelCase JSON, the database
//! named in every output) and metrics that exist before their first event.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::Result;
use integration_tests::{
    RelayProcess, TestBroker, TestDb, emit_tickets, log_path, make_dead, metric, relay_cli,
};

/// Fails on a snake_case key anywhere in `value` outside the stored payload and headers.
fn assert_camel_case(what: &str, value: &serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, inner) in fields {
                assert!(!key.contains('_'), "{what}: key `{key}` is not camelCase");
                if key != "payload" && key != "headers" {
                    assert_camel_case(what, inner);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| assert_camel_case(what, i)),
        _ => {}
    }
}

#[tokio::test]
async fn readyz_names_the_broker_alone_when_only_the_broker_is_wrong() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    // A broker port nobody listens on: the relay keeps retrying it.
    let closed = integration_tests::free_local_addr()?;
    let amqp_url = format!("amqp://guest:guest@{closed}/%2f");
    let log = log_path("readyz-broker-down");
    let relay = RelayProcess::start(&db, &broker, &["--amqp-url", &amqp_url], &log)?;
    // From the first seconds: the database is probed on its own, not only by claims that
    // wait for the broker.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let body = loop {
        if let Ok((code, text)) = relay.get("/readyz").await {
            assert_eq!(code, 503, "{text}");
            if text.contains("database: up") || std::time::Instant::now() > deadline {
                break text;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body, "database: up\nbroker: down\n");

    // Every counter exists at zero before its first event, so alerts have data.
    let (_, metrics) = relay.get("/metrics").await?;
    for counter in [
        "outbox_published_total",
        "outbox_dead_total",
        "outbox_rejected_total",
        "outbox_purged_total",
    ] {
        assert_eq!(
            metric(&metrics, counter),
            Some(0.0),
            "{counter}:\n{metrics}"
        );
    }
    for reason in ["unroutable", "nack", "timeout", "connection"] {
        let line = format!("outbox_failed_attempts_total{{reason=\"{reason}\"}} 0");
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
    // Stopped while the broker is still unreachable: a clean exit, and no panic of the
    // AMQP client's connecting thread in the log.
    relay.signal("TERM").await?;
    let mut relay = relay;
    let status = tokio::time::timeout(Duration::from_secs(20), relay.child.wait()).await??;
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&log)?;
    assert!(!text.contains("panicked"), "{text}");
    broker.cleanup().await?;
    db.cleanup().await
}

/// Output cut short by its reader (`| head`) ends a command quietly: exit 0, no panic, no
/// "Broken pipe" error.
#[tokio::test]
async fn a_reader_that_stops_early_is_not_an_error() -> Result<()> {
    let binary = integration_tests::relay_binary()?;
    let mut child = std::process::Command::new(binary)
        .args(["catalog", "export", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Read one line, then close the pipe while the command is still writing.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    std::io::Read::read_exact(&mut stdout, &mut first)?;
    drop(stdout);
    let output = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", output.status);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn database_errors_say_which_server_what_failed_and_what_to_do() -> Result<()> {
    let db = TestDb::empty().await?;
    let (code, _, stderr) = relay_cli(&db, &["status"]).await?;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("outbox-relay migrate") && stderr.contains(&db.name),
        "the missing schema must point to the migrate command: {stderr}"
    );
    assert!(
        !stderr.contains(" at line "),
        "no server source lines: {stderr}"
    );
    assert_eq!(
        stderr.matches("does not exist").count(),
        1,
        "no repeated chain: {stderr}"
    );

    let closed = integration_tests::free_local_addr()?;
    let url = format!("postgres://postgres:hunter2@{closed}/x");
    let started = std::time::Instant::now();
    let (code, _, stderr) = relay_cli(&db, &["status", "--database-url", &url]).await?;
    assert_eq!(code, 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused port fails at once"
    );
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(
        stderr.contains(&closed.to_string()) && !stderr.contains("hunter2"),
        "{stderr}"
    );

    let mut missing = url::Url::parse(&db.url())?;
    missing.set_path("outbox_t_no_such_database");
    let (code, _, stderr) = relay_cli(&db, &["status", "--database-url", missing.as_str()]).await?;
    assert_eq!(code, 1);
    assert!(stderr.contains("does not exist: create it"), "{stderr}");
    db.cleanup().await
}

#[tokio::test]
async fn the_cli_is_consistent_exit_codes_json_casing_and_the_database_named() -> Result<()> {
    let db = TestDb::new().await?;
    let ids = emit_tickets(&db.pool, 12, 3).await?;
    sqlx::query("UPDATE outbox_events SET created_at = now() - interval '1 hour'")
        .execute(&db.pool)
        .await?;
    // The last event of its key: nothing waits behind it.
    make_dead(&db.pool, &[ids[11]], 10, None).await?;
    let shown = db.url();

    // --max-lag has an exit code of its own, unlike an error (1) or a usage error (2).
    let (code, stdout, stderr) = relay_cli(&db, &["status", "--max-lag", "1m"]).await?;
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("database  {shown}\n")),
        "{stdout}"
    );
    let (code, _, _) = relay_cli(&db, &["status", "--max-lag", "soon"]).await?;
    assert_eq!(code, 2, "a bad flag value is a usage error");

    // Every JSON output is camelCase and names the database.
    let id = ids[1].to_string();
    for args in [
        &["status", "--format", "json"][..],
        &["replay", "--all", "--dry-run", "--format", "json"],
        &["discard", "--all", "--dry-run", "--format", "json"],
        &["purge", "--dry-run", "--format", "json"],
        &["inspect", &id],
    ] {
        let (code, stdout, stderr) = relay_cli(&db, args).await?;
        assert_eq!(code, 0, "{args:?}: {stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout)?;
        assert_camel_case(&format!("{args:?}"), &json);
        if args[0] != "inspect" {
            assert_eq!(json["database"], shown.as_str(), "{args:?}");
        }
    }

    // Nothing pending: the age is null, not 0; a list cut by --top says what it left out.
    integration_tests::mark_delivered(&db.pool, &[], None).await?;
    let (_, stdout, _) = relay_cli(&db, &["status", "--format", "json"]).await?;
    let json: serde_json::Value = serde_json::from_str(&stdout)?;
    assert!(json["oldestPendingAgeSeconds"].is_null(), "{json}");
    sqlx::query("INSERT INTO outbox_events (event_type, payload) VALUES ('TICKET_CREATED', $1)")
        .bind(
            serde_json::json!({"tenantId": uuid::Uuid::now_v7(), "ticketId": uuid::Uuid::now_v7()}),
        )
        .execute(&db.pool)
        .await?;
    let (_, stdout, _) = relay_cli(&db, &["status", "--top", "1"]).await?;
    assert!(stdout.contains("... and 1 more event type(s)"), "{stdout}");

    // Durations print as an operator writes them.
    let (_, stdout, _) = relay_cli(&db, &["purge", "--dry-run"]).await?;
    assert!(stdout.contains("older than 7d"), "{stdout}");

    // `replay --id` of events it leaves alone says what they are and what to pass instead.
    let delivered = ids[2].to_string();
    let unknown = uuid::Uuid::now_v7().to_string();
    let (code, stdout, stderr) = relay_cli(
        &db,
        &["replay", "--id", &delivered, "--id", &unknown, "--dry-run"],
    )
    .await?;
    assert_eq!(code, 3, "nothing to replay: {stderr}");
    assert!(
        stdout.contains("nothing to replay: none of the 2 events named with --id")
            && stdout.contains(&format!(
                "{delivered}: left alone: it is delivered (replay takes one status at a time: add --status delivered)"
            ))
            && stdout.contains(&format!("{unknown}: no such event")),
        "{stdout}"
    );
    let (_, stdout, _) = relay_cli(
        &db,
        &[
            "replay",
            "--id",
            &delivered,
            "--status",
            "delivered",
            "--dry-run",
            "--format",
            "json",
        ],
    )
    .await?;
    let json: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(json["count"], 1, "{json}");
    assert!(json.get("unmatchedIds").is_none(), "{json}");
    db.cleanup().await
}

#[tokio::test]
async fn emitting_into_an_unmigrated_database_says_to_migrate() -> Result<()> {
    use catalog_types::CatalogEvent;
    let db = TestDb::empty().await?;
    let mut tx = db.pool.begin().await?;
    let error = outbox_core::emit(&mut tx, &catalog_types::TicketCreated::example())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("outbox_core::migrate") && message.contains("outbox-relay migrate"),
        "{message}"
    );
    assert_eq!(message.matches("does not exist").count(), 1, "{message}");
    drop(tx);
    db.cleanup().await
}

/// What no retry heals on the database side ends `run` at start, naming the server and the
/// cause once, within seconds: a database that does not exist, a role that does not exist.
/// What may heal is retried with a warning that says what to do: a server that is down (a
/// sidecar often starts before its database; the refusal shows at once, not after the
/// pool's wait), and an outbox not migrated yet (a migration job, or the service itself, may
/// be about to do it): the relay becomes ready once `outbox-relay migrate` has run.
#[tokio::test]
async fn a_database_that_cannot_heal_ends_the_relay_at_start() -> Result<()> {
    let db = TestDb::empty().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let amqp = integration_tests::amqp_url();
    let run = async |database_url: &str| -> Result<(i32, String, std::time::Duration)> {
        let http = integration_tests::free_local_addr()?.to_string();
        let started = std::time::Instant::now();
        let (code, _, stderr) = relay_cli(
            &db,
            &[
                "run",
                "--database-url",
                database_url,
                "--amqp-url",
                &amqp,
                "--exchange",
                &broker.exchange,
                "--http-addr",
                &http,
            ],
        )
        .await?;
        Ok((code, stderr, started.elapsed()))
    };

    let mut missing = url::Url::parse(&db.url())?;
    missing.set_path("outbox_t_no_such_database");
    let (code, stderr, took) = run(missing.as_str()).await?;
    assert_eq!(code, 1, "{stderr}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        stderr.contains("cannot start: database") && stderr.contains("does not exist: create it"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("does not exist").count(),
        1,
        "the refusal is printed once, not again as its own cause: {stderr}"
    );

    let mut stranger = url::Url::parse(&db.url())?;
    stranger.set_username("outbox_t_nobody").unwrap();
    stranger.set_password(Some("hunter2")).unwrap();
    let (code, stderr, _) = run(stranger.as_str()).await?;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("outbox_t_nobody") && !stderr.contains("hunter2"),
        "{stderr}"
    );

    // What may heal is waited for: the relay keeps running and its log says why.
    let waits_saying = async |extra: &[&str], name: &str, said: &[&str]| {
        let log = log_path(name);
        let mut relay = RelayProcess::start(&db, &broker, extra, &log)?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(relay.is_running()?, "{name}: the relay must wait, not exit");
        let text = std::fs::read_to_string(&log)?;
        for needle in said {
            assert!(text.contains(needle), "{name}: {needle:?} missing:\n{text}");
        }
        anyhow::Ok(relay)
    };

    // Down: the relay says so at once (not after the pool's wait) and waits for the server.
    let closed = integration_tests::free_local_addr()?;
    let down = format!("postgres://postgres@{closed}/x");
    let relay = waits_saying(
        &["--database-url", &down],
        "first-contact-db-down",
        &["database not usable at start", "connection refused"],
    )
    .await?;
    relay.signal("TERM").await?;

    // Not migrated yet: the relay waits, saying how to migrate, and is ready once migrated.
    let mut relay = waits_saying(
        &[],
        "first-contact-db-unmigrated",
        &["outbox-relay migrate", &db.name],
    )
    .await?;
    let (code, _, stderr) = relay_cli(&db, &["migrate"]).await?;
    assert_eq!(code, 0, "{stderr}");
    relay.wait_ready(Duration::from_secs(30)).await?;
    relay.signal("TERM").await?;
    db.cleanup().await
}

/// At the default log level, an event the broker cannot route costs one line per attempt
/// naming the event, its type, the attempt and the cause, and what happens next; and no
/// line carries its payload (the AMQP client's returned-message dump holds the body as
/// bytes, possibly personal data).
#[tokio::test]
async fn an_unroutable_event_logs_one_line_per_attempt_and_no_payload_bytes() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&[]).await?; // no binding: every message comes back
    let ticket = uuid::Uuid::now_v7();
    let id = integration_tests::emit_ticket(&db.pool, ticket, outbox_core::EmitOptions::default())
        .await?;
    let log = log_path("unroutable-default-log");
    let relay =
        RelayProcess::start_at_default_log_level(&db, &broker, &["--max-attempts", "2"], &log)?;
    let text = log_once_dead(&db, id, relay, &log).await?;

    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&id.to_string()))
        .collect();
    assert_eq!(failures.len(), 2, "one line per attempt:\n{text}");
    assert!(
        failures[0].contains("publish failed; retrying")
            && failures[0].contains("attempt=1")
            && failures[0].contains("TICKET_UPDATED")
            && failures[0].contains("unroutable")
            && failures[0].contains("retry_in="),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].contains("now dead") && failures[1].contains("attempt=2"),
        "{}",
        failures[1]
    );
    for line in text.lines() {
        assert!(
            !line.contains("123, 34") && !line.contains("BasicReturnMessage"),
            "payload bytes in the log: {line}"
        );
        assert!(
            !line.contains(&ticket.to_string()) || line.contains("ordering_key"),
            "payload content in the log: {line}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "ANSI codes in a non-terminal log: {line}"
        );
    }
    db.cleanup().await?;
    broker.cleanup().await
}

/// `RUST_LOG=info` (what the compose file and the Kubernetes sidecar set) replaces the
/// default filter, so the AMQP client's own `warn` lines come back; its dump of a returned
/// message, the whole body as bytes, must still not.
#[tokio::test]
async fn at_rust_log_info_an_unroutable_event_still_logs_no_payload_bytes() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&[]).await?; // no binding: every message comes back
    let id = integration_tests::emit_ticket(
        &db.pool,
        uuid::Uuid::now_v7(),
        outbox_core::EmitOptions::default(),
    )
    .await?;
    let log = log_path("unroutable-info-log");
    let relay = RelayProcess::start(&db, &broker, &["--max-attempts", "1"], &log)?;
    let text = log_once_dead(&db, id, relay, &log).await?;
    assert!(text.contains("now dead"), "{text}");
    for line in text.lines() {
        assert!(
            !line.contains("123, 34") && !line.contains("BasicReturnMessage"),
            "payload bytes in the log: {line}"
        );
    }
    db.cleanup().await?;
    broker.cleanup().await
}

/// Waits until event `id` is dead, stops `relay`, and returns its log.
async fn log_once_dead(
    db: &TestDb,
    id: uuid::Uuid,
    relay: RelayProcess,
    log: &std::path::Path,
) -> Result<String> {
    integration_tests::wait_until(Duration::from_secs(30), "the event to be dead", || async {
        Ok(integration_tests::event_state(&db.pool, id).await?.status == "dead")
    })
    .await?;
    relay.signal("TERM").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(std::fs::read_to_string(log)?)
}
