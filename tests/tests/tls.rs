//! TLS with rustls: Postgres `sslmode=require` against the local server, and `amqps://`
//! reaching a TLS handshake.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::Result;
use integration_tests::TestDb;
use outbox_relay::publisher::Publisher;

#[tokio::test]
async fn postgres_sslmode_require_encrypts_the_connection_when_the_server_offers_tls() -> Result<()>
{
    let db = TestDb::new().await?;
    let server_ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(&db.pool).await?;
    let separator = if db.url().contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}sslmode=require", db.url());
    let pool = outbox_relay::relay::pool_for(&url, 1)?;
    let encrypted =
        sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await;
    if server_ssl == "on" {
        assert!(encrypted?, "sslmode=require must give an encrypted session");
        // The relay's own statements work over it.
        let backlog = outbox_relay::telemetry::backlog(&pool).await?;
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
async fn amqps_urls_go_through_a_tls_handshake() -> Result<()> {
    // The local broker listens without TLS, so the handshake must fail; the point is that
    // the relay speaks TLS for amqps:// instead of refusing the scheme or sending plain AMQP.
    let publisher = Publisher::new(
        "amqps://guest:guest@127.0.0.1:5672/%2f",
        "outbox.tls-probe",
        Duration::from_secs(2),
    );
    let attempt = tokio::time::timeout(Duration::from_secs(10), publisher.connect_once()).await?;
    let error = attempt
        .err()
        .expect("a TLS client cannot talk to a plain AMQP port")
        .to_string();
    let tls_words = [
        "tls",
        "corrupt message",
        "handshake",
        "invalidcontenttype",
        "ssl",
        "certificate",
    ];
    assert!(
        tls_words.iter().any(|w| error.to_lowercase().contains(w)),
        "expected a TLS handshake failure, got: {error}"
    );
    Ok(())
}
