//! The relay's lifecycle lines tell the truth, in order: "relay started" only once it
//! delivers (the outbox schema exists and the broker is reached), the wake-up mode only
//! after that, a failure that repeats said once and then summarised, and nothing after the
//! shutdown's last line ("relay stopped"), even when the database is gone.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::Result;
use integration_tests::proxy::Proxy;
use integration_tests::{RelayProcess, TestBroker, TestDb, log_path, relay_cli};

/// The position of the first line of `log` holding `needle`.
fn line_of(log: &str, needle: &str) -> Option<usize> {
    log.lines().position(|line| line.contains(needle))
}

/// Stops `relay` with SIGTERM, waits for its exit (it must succeed), lets a few seconds
/// pass, and returns its whole log: the test then sees anything written late.
async fn stop_and_read(mut relay: RelayProcess, log: &std::path::Path) -> Result<String> {
    relay.signal("TERM").await?;
    let status = tokio::time::timeout(Duration::from_secs(40), relay.child.wait()).await??;
    let text = std::fs::read_to_string(log)?;
    assert!(status.success(), "{status}:\n{text}");
    Ok(text)
}

/// The shutdown's lines come last, in order: the signal, then "relay stopped", then
/// nothing.
fn assert_ends_with_the_shutdown(text: &str) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let draining = lines
        .iter()
        .position(|l| l.contains("SIGTERM: draining"))
        .unwrap_or_else(|| panic!("no SIGTERM line:\n{text}"));
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.contains("relay stopped"),
        "the last line is not the shutdown's:\n{text}"
    );
    assert!(
        !lines[draining..]
            .iter()
            .any(|l| l.contains("relay started")),
        "started after the signal:\n{text}"
    );
}

/// Against a database without the outbox schema, two relays (one holding an ownership
/// session, one without: its claims fail) wait, saying what to do, and summarise the
/// failures that repeat instead of writing each; neither says it started, nor names a
/// wake-up mode. Once `outbox-relay migrate` has run, each says "relay started", then the
/// mode; stopped, each ends with "relay stopped".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_an_unmigrated_database_the_relay_starts_only_once_migrated() -> Result<()> {
    let db = TestDb::empty().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let owned_log = log_path("lifecycle-unmigrated-owned");
    let unowned_log = log_path("lifecycle-unmigrated-unowned");
    let owned = RelayProcess::start(&db, &broker, &[], &owned_log)?;
    let unowned = RelayProcess::start(&db, &broker, &["--no-ownership"], &unowned_log)?;

    // Past one summary interval (10 s), the repeats are summarised.
    for log in [&owned_log, &unowned_log] {
        integration_tests::wait_until(
            Duration::from_secs(30),
            "a summary of the repeats",
            || async { Ok(std::fs::read_to_string(log)?.contains(" times in the last ")) },
        )
        .await?;
    }
    for (name, log) in [("owned", &owned_log), ("unowned", &unowned_log)] {
        let text = std::fs::read_to_string(log)?;
        println!("--- {name}, not migrated:\n{text}");
        assert!(text.contains("outbox-relay migrate"), "{name}: {text}");
        assert!(
            !text.contains("relay started") && !text.contains("wake-up mode"),
            "{name}: said before the schema exists:\n{text}"
        );
        let warnings = text.lines().filter(|l| l.contains(" WARN ")).count();
        assert!(
            // Unsummarised, the claims alone wrote ~18 lines in 8 s, the gauges ~50 in 10 s.
            warnings <= 12,
            "{name}: {warnings} warnings, repeats not summarised:\n{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains(" WARN ") && l.contains(" times in the last ")),
            "{name}: no summary of the repeats:\n{text}"
        );
    }
    integration_tests::wait_until(Duration::from_secs(30), "the claims' summary", || async {
        Ok(std::fs::read_to_string(&unowned_log)?
            .lines()
            .any(|l| l.contains("claim failed ") && l.contains(" times in the last ")))
    })
    .await?;
    let unowned_text = std::fs::read_to_string(&unowned_log)?;
    assert!(
        unowned_text.contains("claim failed; retrying")
            && unowned_text.contains("claim failed ")
            && unowned_text.contains(" times in the last "),
        "{unowned_text}"
    );

    let (code, _, stderr) = relay_cli(&db, &["migrate"]).await?;
    assert_eq!(code, 0, "{stderr}");
    let mut texts = Vec::new();
    for (mut relay, log) in [(owned, &owned_log), (unowned, &unowned_log)] {
        relay.wait_ready(Duration::from_secs(30)).await?;
        integration_tests::wait_until(
            Duration::from_secs(20),
            "the mode, once started",
            || async { Ok(std::fs::read_to_string(log)?.contains("wake-up mode")) },
        )
        .await?;
        texts.push(stop_and_read(relay, log).await?);
    }
    for text in &texts {
        println!("--- migrated and stopped:\n{text}");
        let started = line_of(text, "relay started").expect("started");
        let mode = line_of(text, "wake-up mode").expect("the mode, once started");
        assert!(started < mode, "the mode before the start:\n{text}");
        assert_eq!(text.matches("relay started").count(), 1, "{text}");
        assert_ends_with_the_shutdown(text);
    }
    let _ = std::fs::remove_file(&owned_log);
    let _ = std::fs::remove_file(&unowned_log);
    broker.cleanup().await?;
    db.cleanup().await
}

/// A relay whose database stops answering — before it could start, and after it started —
/// stops on SIGTERM with "relay stopped" as its last line: nothing is said after it (no
/// "relay started" seconds later), and it never claims to have started without its
/// database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stopped_while_its_database_is_silent_says_nothing_after_its_last_line()
-> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;

    // Silent from the start: the relay never reaches its database.
    let proxy = Proxy::to_database().await?;
    let url = proxy.redirect(&db.url())?;
    proxy.blackhole();
    let log = log_path("lifecycle-silent-at-start");
    let relay = RelayProcess::start(
        &db,
        &broker,
        &["--database-url", &url, "--db-timeout", "3s"],
        &log,
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = stop_and_read(relay, &log).await?;
    println!("--- silent from the start:\n{text}");
    assert!(!text.contains("relay started"), "{text}");
    assert_ends_with_the_shutdown(&text);
    let _ = std::fs::remove_file(&log);
    proxy.restore();
    drop(proxy);

    // Silent after the start.
    let proxy = Proxy::to_database().await?;
    let url = proxy.redirect(&db.url())?;
    let log = log_path("lifecycle-silent-after-start");
    let mut relay = RelayProcess::start(
        &db,
        &broker,
        &["--database-url", &url, "--db-timeout", "3s"],
        &log,
    )?;
    relay.wait_ready(Duration::from_secs(30)).await?;
    integration_tests::wait_until(Duration::from_secs(10), "relay started", || async {
        Ok(std::fs::read_to_string(&log)?.contains("relay started"))
    })
    .await?;
    proxy.blackhole();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = stop_and_read(relay, &log).await?;
    println!("--- silent after the start:\n{text}");
    assert_eq!(text.matches("relay started").count(), 1, "{text}");
    assert_ends_with_the_shutdown(&text);
    let _ = std::fs::remove_file(&log);
    proxy.restore();
    drop(proxy);

    broker.cleanup().await?;
    db.cleanup().await
}
