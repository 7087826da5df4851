//! A crashed relay's work moves on in seconds, not after its lease: a relay holds an
//! advisory lock for as long as it runs, its claim tokens name that lock, and a lease whose
//! owner's lock nobody holds is reaped by the next claim. A relay that is alive keeps its
//! leases; claims made without an owner keep their wall-clock lease.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::proxy::Proxy;
use integration_tests::{
    RelayProcess, RunningRelay, TestBroker, TestDb, count_status, log_path, relay_config,
    wait_until, with_db_and_broker,
};
use outbox_relay::engine::lease::{OWNER_LOCK_CLASS, owner_lock_key};
use outbox_relay::store::claim;
use serde_json::json;
use sqlx::{Connection, PgPool};
use uuid::Uuid;

async fn insert(pool: &PgPool, key: &str) -> Result<Uuid> {
    Ok(sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload, ordering_key)
         VALUES ('TICKET_UPDATED', $1, $2) RETURNING id",
    )
    .bind(json!({"ticketId": Uuid::now_v7(), "updatedFields": ["status"]}))
    .bind(key)
    .fetch_one(pool)
    .await?)
}

async fn leased(pool: &PgPool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox_leased_events")
            .fetch_one(pool)
            .await?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_end_with_the_session_of_the_relay_that_holds_them() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        // Two keys of one partition (a claim leases one partition), another for a third.
        let prefix = format!("ticket-{}", Uuid::now_v7().simple());
        let keys = integration_tests::keys_in_one_partition(&db.pool, None, &prefix, 2).await?;
        let (key, other) = (&keys[0], &keys[1]);
        let owned: Vec<Uuid> = vec![
            insert(&db.pool, key).await?,
            insert(&db.pool, key).await?,
            insert(&db.pool, other).await?,
        ];
        // A relay's ownership session (as `outbox-relay run` keeps one) and its claim, leased
        // for an hour.
        let mut owner_session = db.connect().await?;
        let owner: u32 = 0x8000_0001;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(OWNER_LOCK_CLASS)
            .bind(owner_lock_key(owner))
            .fetch_one(&mut owner_session)
            .await?;
        assert!(locked);
        sqlx::query("INSERT INTO outbox_relay_owners (owner, relay_id) VALUES ($1, 'crashed')")
            .bind(owner_lock_key(owner))
            .execute(&db.pool)
            .await?;
        let hour = Duration::from_secs(3600);
        let claimed = claim::claim_within(
            &db.pool,
            Duration::from_secs(10),
            "crashed",
            Some(owner),
            100,
            hour,
            16,
        )
        .await?;
        assert_eq!(claimed.events.len(), 3);
        // A claim without an owner (an older relay's) keeps its wall-clock lease.
        // (On a key of another partition: the first one is leased.)
        let partition_of = |key: String| {
            let pool = db.pool.clone();
            async move {
                anyhow::Ok(
                    sqlx::query_scalar::<_, i64>(
                        "SELECT hashtextextended(outbox_scope(NULL, $1), 0) & 15",
                    )
                    .bind(key)
                    .fetch_one(&pool)
                    .await?,
                )
            }
        };
        let leased_part = partition_of(key.clone()).await?;
        let mut legacy_key = format!("legacy:{}", Uuid::now_v7());
        while partition_of(legacy_key.clone()).await? == leased_part {
            legacy_key = format!("legacy:{}", Uuid::now_v7());
        }
        let ownerless = insert(&db.pool, &legacy_key).await?;
        let legacy = claim::claim(&db.pool, "legacy", 100, hour).await?;
        assert_eq!(legacy.events.len(), 1);

        let relay = RunningRelay::start(relay_config(db, broker));
        // While the owner's session lives, its leases hold.
        let early = broker.collect(1, Duration::from_secs(3)).await?;
        assert!(
            early.is_empty(),
            "a live owner's lease was taken over: {early:?}"
        );
        assert_eq!(leased(&db.pool).await?, 4);

        // The owner goes away: its leases end now, not in an hour.
        let gone = Instant::now();
        owner_session.close().await?;
        let received = broker.collect(3, Duration::from_secs(20)).await?;
        let took = gone.elapsed();
        let ids: Vec<String> = received.iter().map(|m| m.message_id.clone()).collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        for id in &owned {
            assert!(ids.contains(&id.to_string()), "{id}: {ids:?}");
        }
        let first = ids.iter().position(|i| *i == owned[0].to_string());
        let second = ids.iter().position(|i| *i == owned[1].to_string());
        assert!(first < second, "the key's events in order: {ids:?}");
        assert!(
            took < Duration::from_secs(15),
            "took {took:?} after the owner's session ended"
        );
        let owners: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox_relay_owners WHERE owner = $1")
                .bind(owner_lock_key(owner))
                .fetch_one(&db.pool)
                .await?;
        assert_eq!(owners, 0, "the relay that is gone is forgotten");
        // The ownerless claim is still leased.
        let token: Option<Uuid> =
            sqlx::query_scalar("SELECT lease_token FROM outbox_event_status WHERE id = $1")
                .bind(ownerless)
                .fetch_one(&db.pool)
                .await?;
        assert_eq!(token, Some(legacy.token));
        relay.stop().await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_relays_events_go_out_long_before_its_lease_ends() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    // Relay A reaches the broker through a proxy that goes silent: its waves wait for
    // confirms that never come, so it holds its leases (two minutes) when it is killed.
    let proxy = Proxy::to_broker().await?;
    let log = log_path("crash-takeover-a");
    let mut relay_a = RelayProcess::start_via(
        &db,
        &broker,
        &proxy.amqp_url()?,
        &[
            "--lease",
            "120s",
            "--confirm-timeout",
            "60s",
            "--publish-timeout",
            "5s",
            // One delivery loop: its channel is open after the warm-up (a loop that opens
            // its channel only once the broker is silent would wait there, not claim).
            "--in-flight-batches",
            "1",
        ],
        &log,
    )?;
    relay_a.wait_ready(Duration::from_secs(30)).await?;
    // Warm up: every delivery loop has its channel open before the broker goes silent.
    for _ in 0..30 {
        insert(&db.pool, &format!("warm-up:{}", Uuid::now_v7())).await?;
    }
    wait_until(Duration::from_secs(30), "the warm-up delivered", || async {
        Ok(count_status(&db.pool, "delivered").await? == 30)
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.freeze();
    // One transaction on keys of one partition, so that relay A's one claim takes them all.
    let mut ids = Vec::new();
    let prefix = format!("ticket-{}", Uuid::now_v7().simple());
    let keys = integration_tests::keys_in_one_partition(&db.pool, None, &prefix, 10).await?;
    let mut tx = db.pool.begin().await?;
    for key in &keys {
        for _ in 0..5 {
            let id: Uuid = sqlx::query_scalar(
                "INSERT INTO outbox_events (event_type, payload, ordering_key)
                 VALUES ('TICKET_UPDATED', $1, $2) RETURNING id",
            )
            .bind(json!({"ticketId": Uuid::now_v7(), "updatedFields": ["status"]}))
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            ids.push(id);
        }
    }
    tx.commit().await?;
    wait_until(
        Duration::from_secs(30),
        "relay A leases every event",
        || async { Ok(leased(&db.pool).await? == ids.len() as i64) },
    )
    .await?;
    relay_a.signal("KILL").await?;
    let killed = Instant::now();

    let relay_b = RunningRelay::start(relay_config(&db, &broker));
    let expected = ids.len() as i64 + 30;
    wait_until(Duration::from_secs(60), "relay B delivers them", || async {
        Ok(count_status(&db.pool, "delivered").await? == expected)
    })
    .await?;
    let took = killed.elapsed();
    eprintln!("a SIGKILLed relay's 120 s leases were taken over and delivered in {took:?}");
    assert!(
        took < Duration::from_secs(30),
        "the events waited {took:?}: as long as the lease, not the relay's death"
    );
    relay_b.stop().await?;
    let _ = relay_a.child.wait().await;
    let _ = std::fs::remove_file(&log);
    broker.cleanup().await?;
    db.cleanup().await
}

/// Without an ownership session (`--no-ownership`, for PgBouncer in transaction mode) the
/// relay delivers as before, its claims naming no owner; with one, it registers while it
/// runs and forgets itself when stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_registers_its_ownership_while_it_runs_unless_told_not_to() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let owners = || async {
            anyhow::Ok(
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox_relay_owners")
                    .fetch_one(&db.pool)
                    .await?,
            )
        };
        let mut config = relay_config(db, broker);
        config.ownership = false;
        let relay = RunningRelay::start(config);
        insert(&db.pool, "ticket:a").await?;
        assert_eq!(broker.collect(1, Duration::from_secs(20)).await?.len(), 1);
        assert_eq!(owners().await?, 0);
        relay.stop().await?;

        let relay = RunningRelay::start(relay_config(db, broker));
        insert(&db.pool, "ticket:b").await?;
        assert_eq!(broker.collect(1, Duration::from_secs(20)).await?.len(), 1);
        assert_eq!(owners().await?, 1);
        relay.stop().await?;
        // Its session closed; the next claim finds it gone and forgets it (after reaping
        // whatever it still held, as for a relay that crashed).
        wait_until(
            Duration::from_secs(10),
            "the stopped relay forgotten",
            || async {
                claim::claim(&db.pool, "next", 1, Duration::from_secs(30)).await?;
                Ok(owners().await? == 0)
            },
        )
        .await?;
        Ok(())
    })
    .await
}
