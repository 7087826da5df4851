//! A database the relay cannot trust ends `run` at start, as a broker does: the server's
//! certificate not signed by a CA the relay trusts is no network error to retry for ever.
//!
//! The local server speaks TLS with a certificate no public CA signed (Debian's snakeoil
//! one), so `sslmode=verify-full` with the default roots fails on the certificate, exactly
//! as a wrong `sslrootcert` does (rustls reports both as an I/O error, not a TLS one).

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::{TestBroker, TestDb, amqp_url, free_local_addr, relay_binary};

#[tokio::test]
async fn a_database_certificate_nobody_trusts_ends_the_relay_at_start() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(&db.pool).await?;
    let mut url = url::Url::parse(&db.url())?;
    url.set_password(Some("hunter2")).unwrap();
    url.query_pairs_mut().append_pair("sslmode", "verify-full");
    let http = free_local_addr()?.to_string();
    let started = Instant::now();
    let child = tokio::process::Command::new(relay_binary()?)
        .args(["run", "--database-url", url.as_str()])
        .args(["--amqp-url", &amqp_url(), "--exchange", &broker.exchange])
        .args(["--http-addr", &http])
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    // A relay that keeps retrying is killed when the wait ends (kill_on_drop).
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await;
    let Ok(output) = output else {
        panic!("the relay kept running with a certificate it cannot trust (ssl = {ssl})");
    };
    let output = output?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "exit {:?} after {:?}: {stderr}",
        output.status.code(),
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot start: database"), "{stderr}");
    assert!(
        stderr.contains(&db.name) && !stderr.contains("hunter2"),
        "names the server, not the password: {stderr}"
    );
    let said = stderr.to_lowercase();
    if ssl == "on" {
        assert!(said.contains("certificate"), "{stderr}");
    } else {
        assert!(said.contains("tls"), "{stderr}");
    }
    broker.cleanup().await?;
    db.cleanup().await
}
