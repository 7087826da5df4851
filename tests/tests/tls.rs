//! TLS with rustls: Postgres `sslmode=require` against the local server, and `amqps://`
//! opening with a TLS handshake.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::Result;
use integration_tests::TestDb;
use outbox_relay::publisher::Broker;

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
        let backlog = outbox_relay::store::stats::gauges(&pool).await?;
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
