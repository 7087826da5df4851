//! TLS with rustls, for real: certificates made by the test ([`TestCa`]: a CA of its own and
//! a server certificate for `localhost` / `127.0.0.1`; another, unrelated CA for the
//! refusals).
//!
//! - RabbitMQ over `amqps://` through a TLS terminator (`socat`) in front of the local
//!   broker: the relay trusts the test CA through `--amqp-ca-file` and delivers; with the
//!   wrong CA it exits at start, naming the broker (masked) and the untrusted certificate.
//! - PostgreSQL with `sslmode=verify-full` against a private cluster started with TLS:
//!   `migrate`, `status` and the relay itself work with the test CA as `sslrootcert`; with
//!   the wrong CA `status` fails saying so.
//! - `sslmode=require` against the local server, and `amqps://` opening with a TLS
//!   handshake.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::{Context, Result};
use integration_tests::servers::PrivatePostgres;
use integration_tests::tls::{TestCa, TlsTerminator};
use integration_tests::{
    RelayProcess, TestDb, emit_tickets, id_set, log_path, relay_binary, wait_until_settled,
    with_db_and_broker,
};
use outbox_relay::broker::connection::Broker;

#[tokio::test]
async fn postgres_sslmode_require_encrypts_the_connection_when_the_server_offers_tls() -> Result<()>
{
    let db = TestDb::new().await?;
    let server_ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(&db.pool).await?;
    let separator = if db.url().contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}sslmode=require", db.url());
    let pool = outbox_relay::pool_for(&url, 1)?;
    let encrypted =
        sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await;
    if server_ssl == "on" {
        assert!(encrypted?, "sslmode=require must give an encrypted session");
        // The relay's own statements work over it.
        let backlog = outbox_relay::store::stats::gauges(&mut *pool.acquire().await?).await?;
        assert_eq!(backlog.pending, 0);
    } else {
        let error = encrypted.expect_err("sslmode=require must refuse a server without TLS");
        assert!(
            error.to_string().to_lowercase().contains("tls") || error.to_string().contains("SSL"),
            "{error}"
        );
    }
    pool.close().await;
    db.cleanup().await
}

#[tokio::test]
async fn amqps_urls_open_with_a_tls_client_hello() -> Result<()> {
    use tokio::io::AsyncReadExt;
    // A listener of the test's own stands in for a TLS broker: the first bytes a client
    // sends for amqps:// must be a TLS handshake record, not the plain `AMQP` header.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let url = format!("amqps://guest:guest@localhost:{port}/%2f");
    let client = tokio::spawn(async move {
        let broker = Broker::new(&url, "outbox.tls-probe");
        let _ = tokio::time::timeout(Duration::from_secs(5), broker.connect_once()).await;
    });
    let (mut socket, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await??;
    let mut first = [0u8; 3];
    tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut first)).await??;
    assert_eq!(first[0], 0x16, "not a TLS handshake record: {first:?}");
    assert_eq!(first[1], 0x03, "not a TLS record version: {first:?}");
    drop(socket);
    client.await?;
    Ok(())
}

/// The local broker's host and port (what the TLS terminator forwards to).
fn broker_upstream() -> Result<String> {
    let url = url::Url::parse(&integration_tests::amqp_url())?;
    Ok(format!(
        "{}:{}",
        url.host_str().context("the AMQP URL has no host")?,
        url.port().unwrap_or(5672)
    ))
}

/// The local broker's URL with `amqps://`, host `localhost` (the certificate's name) and the
/// terminator's port.
fn amqps_url(terminator: &TlsTerminator) -> Result<String> {
    let mut url = url::Url::parse(&integration_tests::amqp_url())?;
    url.set_scheme("amqps")
        .map_err(|()| anyhow::anyhow!("cannot set the scheme"))?;
    url.set_host(Some("localhost"))?;
    url.set_port(Some(terminator.port()))
        .map_err(|()| anyhow::anyhow!("cannot set the port"))?;
    Ok(url.to_string())
}

fn log_of(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_delivered_over_amqps_trusting_the_test_ca() -> Result<()> {
    let ca = TestCa::new()?;
    let terminator = TlsTerminator::start(&ca, &broker_upstream()?).await?;
    let url = amqps_url(&terminator)?;
    let ca_file = ca.ca_cert().display().to_string();
    with_db_and_broker(&["#"], async |db, broker| {
        let ids = emit_tickets(&db.pool, 300, 30).await?;
        let log = log_path("amqps");
        let mut relay = RelayProcess::start(
            db,
            broker,
            &["--amqp-url", &url, "--amqp-ca-file", &ca_file],
            &log,
        )?;
        wait_until_settled(&db.pool, &ids, Duration::from_secs(60))
            .await
            .with_context(|| log_of(&log))?;
        let (seen, count) = broker
            .received_ids(ids.len(), Duration::from_secs(5))
            .await?;
        assert_eq!(seen, id_set(&ids));
        assert_eq!(count, ids.len(), "each event once");
        let text = log_of(&log);
        assert!(
            text.contains(&format!(
                "amqps://guest:***@localhost:{}",
                terminator.port()
            )),
            "connected over TLS, the node named masked: {text}"
        );
        relay.signal("TERM").await?;
        assert!(relay.child.wait().await?.success(), "{text}");
        let _ = std::fs::remove_file(&log);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_ends_the_relay_at_start() -> Result<()> {
    let ca = TestCa::new()?;
    let other = TestCa::new()?;
    let terminator = TlsTerminator::start(&ca, &broker_upstream()?).await?;
    let url = amqps_url(&terminator)?;
    let wrong_ca = other.ca_cert().display().to_string();
    with_db_and_broker(&["#"], async |db, broker| {
        let log = log_path("amqps-wrong-ca");
        let started = std::time::Instant::now();
        let mut relay = RelayProcess::start(
            db,
            broker,
            &["--amqp-url", &url, "--amqp-ca-file", &wrong_ca],
            &log,
        )?;
        let status = tokio::time::timeout(Duration::from_secs(30), relay.child.wait())
            .await
            .map_err(|_| anyhow::anyhow!("the relay kept retrying: {}", log_of(&log)))??;
        let text = log_of(&log);
        println!("wrong CA: exit {status:?} after {:?}", started.elapsed());
        assert!(!status.success(), "{text}");
        assert!(text.contains("TLS certificate not trusted"), "{text}");
        assert!(
            text.contains(&format!(
                "broker amqps://guest:***@localhost:{}",
                terminator.port()
            )),
            "names the broker, masked: {text}"
        );
        assert!(!text.contains("guest:guest"), "no password printed: {text}");
        let _ = std::fs::remove_file(&log);
        Ok(())
    })
    .await
}

/// Runs the built `outbox-relay` with `args` (no database or broker from the environment);
/// returns (exit code, stdout, stderr).
async fn relay_command(args: &[&str]) -> Result<(i32, String, String)> {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(relay_binary()?)
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("AMQP_URL")
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("outbox-relay {args:?} did not finish"))??;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_full_with_the_test_ca_carries_the_operator_commands_and_the_relay()
-> Result<()> {
    let ca = TestCa::new()?;
    let other = TestCa::new()?;
    let pg = PrivatePostgres::start_with_tls(Some((&ca.server_cert(), &ca.server_key()))).await?;
    let plain = pg.create_database("outbox_tls").await?;
    let verified = |root: &std::path::Path| {
        format!("{plain}?sslmode=verify-full&sslrootcert={}", root.display())
    };
    let url = verified(&ca.ca_cert());

    // The session is encrypted, the server's certificate checked against the test CA.
    let pool = outbox_relay::pool_for(&url, 2)?;
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .with_context(|| pg.log())?;
    assert!(encrypted, "sslmode=verify-full gives an encrypted session");

    let (code, _, stderr) = relay_command(&["migrate", "--database-url", &url]).await?;
    assert_eq!(code, 0, "migrate over verify-full: {stderr}");
    let (code, stdout, stderr) = relay_command(&["status", "--database-url", &url]).await?;
    assert_eq!(code, 0, "status over verify-full: {stderr}");
    assert!(stdout.contains("pending"), "{stdout}");

    // The wrong CA: refused, and said so.
    let wrong = verified(&other.ca_cert());
    let (code, stdout, stderr) = relay_command(&["status", "--database-url", &wrong]).await?;
    println!("status with the wrong CA: exit {code}: {stderr}");
    assert_ne!(code, 0, "{stdout}{stderr}");
    let said = stderr.to_lowercase();
    assert!(
        said.contains("certificate") || said.contains("tls"),
        "the error names the TLS failure: {stderr}"
    );
    assert!(
        said.contains("outbox_tls"),
        "the error names the database: {stderr}"
    );

    // The relay end to end over verify-full (the broker on the shared server).
    let broker = integration_tests::TestBroker::new(&["#"]).await?;
    let ids = emit_tickets(&pool, 200, 20).await?;
    let log = log_path("pg-verify-full");
    let http = integration_tests::free_local_addr()?;
    let mut relay = tokio::process::Command::new(relay_binary()?)
        .arg("run")
        .args(["--database-url", &url])
        .args(["--amqp-url", &integration_tests::amqp_url()])
        .args(["--exchange", &broker.exchange])
        .args(["--http-addr", &http.to_string()])
        .args(["--poll-interval", "200ms"])
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()?;
    wait_until_settled(&pool, &ids, Duration::from_secs(60))
        .await
        .with_context(|| log_of(&log))?;
    let (seen, count) = broker
        .received_ids(ids.len(), Duration::from_secs(5))
        .await?;
    assert_eq!(seen, id_set(&ids));
    assert_eq!(count, ids.len());
    let _ = relay.start_kill();
    relay.wait().await?;
    pool.close().await;
    broker.cleanup().await?;
    let _ = std::fs::remove_file(&log);
    Ok(())
}
