//! The least-privilege roles of `deploy/postgres/grants.sql`: a writer, the relay, an
//! operator and a consumer each do their whole job under their role, and cannot do more
//! (alter or truncate the table, write events they should not, rewrite the audit trail).

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::{Context, Result, bail};
use integration_tests::{
    TestBroker, TestDb, count_status, database_url, emit_tickets, make_dead, relay_cli,
    relay_config, unique_suffix, wait_until, with_db_and_broker,
};
use outbox_core::{EmitOptions, InboxOutcome};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

/// The four roles of one test (roles are global to the cluster: unique names with the
/// kit's prefix, dropped at the end, and by the test command if a run was interrupted).
struct Roles {
    writer: String,
    relay: String,
    operator: String,
    consumer: String,
}

impl Roles {
    fn new() -> Roles {
        let suffix = unique_suffix();
        Roles {
            writer: format!("outbox_t_{suffix}_writer"),
            relay: format!("outbox_t_{suffix}_relay"),
            operator: format!("outbox_t_{suffix}_operator"),
            consumer: format!("outbox_t_{suffix}_consumer"),
        }
    }

    fn all(&self) -> [&str; 4] {
        [&self.writer, &self.relay, &self.operator, &self.consumer]
    }

    async fn create(&self) -> Result<()> {
        let mut admin = admin().await?;
        for role in self.all() {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} LOGIN")))
                .execute(&mut admin)
                .await?;
        }
        Ok(())
    }

    /// Revokes what the roles were granted in `db` and drops them.
    async fn drop(&self, db: &TestDb) -> Result<()> {
        let mut conn = db.connect().await?;
        let mut admin = admin().await?;
        for role in self.all() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP OWNED BY {role}")))
                .execute(&mut conn)
                .await?;
            // Sessions of the role (a relay's pool) must be gone before the role.
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            )
            .bind(role)
            .execute(&mut admin)
            .await?;
        }
        for role in self.all() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
                .execute(&mut admin)
                .await?;
        }
        Ok(())
    }
}

async fn admin() -> Result<sqlx::PgConnection> {
    let options: PgConnectOptions = database_url().parse()?;
    Ok(options.connect().await?)
}

/// Runs the grants file with psql, as an operator would.
async fn apply_grants(db: &TestDb, roles: &Roles) -> Result<()> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/postgres/grants.sql");
    let output = tokio::process::Command::new("psql")
        .arg(db.url())
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-v", &format!("writer_role={}", roles.writer)])
        .args(["-v", &format!("relay_role={}", roles.relay)])
        .args(["-v", &format!("operator_role={}", roles.operator)])
        .args(["-v", &format!("consumer_role={}", roles.consumer)])
        .args(["-f", file])
        .output()
        .await
        .context("running psql")?;
    if !output.status.success() {
        bail!(
            "grants.sql failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The test database's URL with another user.
fn url_as(db: &TestDb, role: &str) -> String {
    let mut url = url::Url::parse(&db.url()).expect("test URL");
    url.set_username(role).expect("a username");
    url.to_string()
}

async fn pool_as(db: &TestDb, role: &str) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .connect_with(db.options.clone().username(role))
        .await?)
}

/// Runs `statement` under `pool` and expects PostgreSQL's "permission denied" (42501).
async fn refused(pool: &PgPool, statement: &str) {
    match sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(pool)
        .await
    {
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42501") => {}
        other => panic!("`{statement}` should be refused (42501), got {other:?}"),
    }
}

/// Emits a ticket event of `tenant` with a fixed dedupe key, as the pool's role.
async fn emit_once(pool: &PgPool, tenant: Uuid) -> Result<Uuid> {
    use catalog_types::CatalogEvent;
    let event = catalog_types::TicketUpdated {
        tenant_id: tenant,
        ..catalog_types::TicketUpdated::example()
    };
    let mut tx = pool.begin().await?;
    let options = EmitOptions::new().dedupe_key("least-privilege-once");
    let id = outbox_core::emit_with(&mut tx, &event, options).await?;
    tx.commit().await?;
    Ok(id)
}

#[tokio::test]
async fn each_role_does_its_job_and_nothing_more() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        use futures_util::FutureExt;
        let roles = Roles::new();
        roles.create().await?;
        let outcome = std::panic::AssertUnwindSafe(run_as_roles(db, broker, &roles))
            .catch_unwind()
            .await;
        let dropped = roles.drop(db).await;
        outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        dropped
    })
    .await
}

async fn run_as_roles(db: &TestDb, broker: &TestBroker, roles: &Roles) -> Result<()> {
    apply_grants(db, roles).await?;

    // The writer emits, with and without a dedupe key (read back on a repeat), and by plain
    // SQL; it cannot change or delete events, nor the schema.
    let writer = pool_as(db, &roles.writer).await?;
    let mut ids = emit_tickets(&writer, 40, 8).await?;
    let tenant = Uuid::now_v7();
    let first = emit_once(&writer, tenant).await?;
    let again = emit_once(&writer, tenant).await?;
    assert_eq!(first, again, "the repeat returns the first id");
    ids.push(first);
    let plain: Uuid = sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload, ordering_key)
         VALUES ('TICKET_UPDATED', $1, 'ticket:plain') RETURNING id",
    )
    .bind(serde_json::json!({"tenantId": Uuid::now_v7(), "ticketId": Uuid::now_v7()}))
    .fetch_one(&writer)
    .await?;
    ids.push(plain);
    // A writer's rows are append-only.
    refused(&writer, "UPDATE outbox_events SET available_at = now()").await;
    refused(&writer, "UPDATE outbox_events SET payload = '{}'").await;
    // The row has no delivery state to name (`producer_proof` checks its columns), and the
    // one column the database fills in, `seq`, a writer cannot name.
    refused(
        &writer,
        "INSERT INTO outbox_events (event_type, payload, seq)
         SELECT event_type, payload, seq FROM outbox_events LIMIT 1",
    )
    .await;
    refused(&writer, "DELETE FROM outbox_events").await;
    // The relay's own state: failures, next tries, deaths, leases.
    refused(&writer, "SELECT * FROM outbox_attempts").await;
    refused(
        &writer,
        "INSERT INTO outbox_attempts (event_id, failures) VALUES (gen_random_uuid(), 0)",
    )
    .await;
    refused(&writer, "DELETE FROM outbox_attempts").await;
    refused(&writer, "SELECT * FROM outbox_event_status").await;
    refused(&writer, "SELECT * FROM outbox_leased_events").await;
    for table in [
        "outbox_partitions",
        "outbox_gaps",
        "outbox_gap_groups",
        "outbox_held",
        "outbox_replays",
        "outbox_delivered_behind",
    ] {
        refused(&writer, &format!("SELECT * FROM {table}")).await;
        refused(&writer, &format!("DELETE FROM {table}")).await;
    }
    refused(&writer, "ALTER TABLE outbox_events ADD COLUMN x int").await;
    refused(&writer, "CREATE TABLE outbox_t_sneaky (x int)").await;

    // The relay delivers everything under its role.
    let mut config = relay_config(db, broker);
    config.database_url = url_as(db, &roles.relay);
    let relay = integration_tests::RunningRelay::start(config);
    let pool = db.pool.clone();
    let expected = ids.len() as i64;
    wait_until(Duration::from_secs(60), "every event delivered", || {
        let pool = pool.clone();
        async move { Ok(count_status(&pool, "delivered").await? == expected) }
    })
    .await?;
    // A writer that commits late: its seq is a gap below a later event of its partition,
    // which goes out first; once it commits, the relay reads the gap's group in full and
    // settles it (narrowing, merging) under its role.
    let keys = integration_tests::keys_in_one_partition(&db.pool, None, "late", 2).await?;
    let insert = "INSERT INTO outbox_events (event_type, payload, ordering_key)
                  VALUES ('TICKET_UPDATED', $1, $2) RETURNING id";
    let payload = || serde_json::json!({"tenantId": Uuid::now_v7(), "ticketId": Uuid::now_v7()});
    let mut late_tx = writer.begin().await?;
    let late: Uuid = sqlx::query_scalar(insert)
        .bind(payload())
        .bind(&keys[0])
        .fetch_one(&mut *late_tx)
        .await?;
    let other: Uuid = sqlx::query_scalar(insert)
        .bind(payload())
        .bind(&keys[1])
        .fetch_one(&writer)
        .await?;
    wait_until(Duration::from_secs(60), "the later event delivered", || {
        let pool = pool.clone();
        async move { Ok(count_status(&pool, "delivered").await? == expected + 1) }
    })
    .await?;
    let gaps: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_gaps")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(gaps, 1, "the late writer's seq is a gap");
    late_tx.commit().await?;
    wait_until(Duration::from_secs(60), "the late event delivered", || {
        let pool = pool.clone();
        async move { Ok(count_status(&pool, "delivered").await? == expected + 2) }
    })
    .await?;
    ids.extend([late, other]);
    relay.stop().await?;
    let relay_pool = pool_as(db, &roles.relay).await?;
    // Retention (--retention) deletes under the relay's role too.
    let purged =
        outbox_relay::store::purge::finished_events(&relay_pool, Duration::ZERO, 1000).await?;
    assert_eq!(purged, ids.len() as u64);
    refused(
        &relay_pool,
        "INSERT INTO outbox_events (event_type, payload) VALUES ('TICKET_UPDATED', '{}')",
    )
    .await;
    refused(&relay_pool, "TRUNCATE outbox_events").await;
    refused(&relay_pool, "ALTER TABLE outbox_events DROP COLUMN headers").await;
    refused(&relay_pool, "SELECT * FROM outbox_inbox").await;
    refused(&relay_pool, "SELECT * FROM outbox_replay_audit").await;
    // A failure, its due retry and a death are recorded under the relay's role too (its
    // own table, `outbox_attempts`).
    {
        use outbox_relay::store::claim::claim;
        use outbox_relay::store::settle::{Outcome, settle};
        let failing = emit_tickets(&writer, 2, 2).await?;
        let lease = Duration::from_secs(60);
        // Each claim takes one partition: claim until both are settled.
        let mut settled_total = (0, 0);
        for _ in 0..32 {
            let batch = claim(&relay_pool, "relay", 10, lease).await?;
            if batch.is_empty() && batch.feed.is_none() {
                break;
            }
            let outcomes: Vec<(Uuid, Outcome)> = batch
                .events
                .iter()
                .map(|e| {
                    let outcome = if e.id == failing[0] {
                        Outcome::Failed {
                            error: "nack".to_owned(),
                            retry_in: Duration::from_secs(3600),
                        }
                    } else {
                        Outcome::Rejected {
                            error: "message too large".to_owned(),
                        }
                    };
                    (e.id, outcome)
                })
                .collect();
            let settled = settle(&relay_pool, &batch, 10, &outcomes).await?;
            settled_total.0 += settled.retrying;
            settled_total.1 += settled.dead;
        }
        assert_eq!(settled_total, (1, 1), "one retrying, one dead");
        // The retry comes due (the operator role may move it); the dead one stays.
        sqlx::query("UPDATE outbox_held SET due_at = now() WHERE due_at IS NOT NULL")
            .execute(&db.pool)
            .await?;
        let mut again_ids = Vec::new();
        for _ in 0..32 {
            let again = claim(&relay_pool, "relay", 10, lease).await?;
            if again.is_empty() && again.feed.is_none() {
                break;
            }
            let outcomes: Vec<_> = again
                .events
                .iter()
                .map(|e| (e.id, Outcome::Delivered))
                .collect();
            again_ids.extend(again.events.iter().map(|e| e.id));
            settle(&relay_pool, &again, 10, &outcomes).await?;
        }
        assert_eq!(
            again_ids,
            vec![failing[0]],
            "the due retry, not the dead event"
        );
        sqlx::query("DELETE FROM outbox_events WHERE id = ANY($1)")
            .bind(&failing)
            .execute(&db.pool)
            .await?;
        sqlx::query("DELETE FROM outbox_attempts WHERE event_id = ANY($1)")
            .bind(&failing)
            .execute(&db.pool)
            .await?;
    }

    // The consumer records messages in its inbox, and nothing else.
    let consumer = pool_as(db, &roles.consumer).await?;
    let mut tx = consumer.begin().await?;
    assert_eq!(
        outbox_core::inbox::record(&mut tx, "billing", "m-1").await?,
        InboxOutcome::Process
    );
    tx.commit().await?;
    refused(&consumer, "DELETE FROM outbox_inbox").await;
    refused(&consumer, "SELECT * FROM outbox_events").await;

    // The operator runs every operator command; the audit records its role.
    let more = emit_tickets(&db.pool, 5, 5).await?;
    make_dead(&db.pool, &more, 10, None).await?;
    let operator_url = url_as(db, &roles.operator);
    let database = ["--database-url", operator_url.as_str()];
    let id = more[0].to_string();
    for command in [
        &["status"][..],
        &["status", "--format", "json"],
        &["inspect", &id],
        &["replay", "--id", &id, "--actor", "alice"],
        &["discard", "--id", &more[1].to_string(), "--actor", "alice"],
        &["replay", "--status", "dead", "--all", "--dry-run"],
        &["purge", "--older-than", "0s"],
        &["purge", "--inbox", "--older-than", "0s"],
        &["wakeup"],
    ] {
        let args: Vec<&str> = command.iter().copied().chain(database).collect();
        let (code, stdout, stderr) = relay_cli(db, &args).await?;
        assert_eq!(code, 0, "{command:?} as the operator: {stdout}{stderr}");
    }
    let (code, _, stderr) = relay_cli(db, &["wakeup", "notify", database[0], database[1]]).await?;
    assert_eq!(code, 1, "only the owner switches the wake-up mode");
    assert!(stderr.contains("owner"), "{stderr}");
    let audit: Vec<(String, Option<String>, bool)> = sqlx::query_as(
        "SELECT actor, session_role, dry_run FROM outbox_replay_audit WHERE actor = 'alice' OR dry_run ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await?;
    let operator_role = Some(roles.operator.clone());
    assert_eq!(
        audit
            .iter()
            .map(|(actor, role, dry_run)| (actor.as_str() == "alice", role.clone(), *dry_run))
            .collect::<Vec<_>>(),
        vec![
            (true, operator_role.clone(), false),
            (true, operator_role.clone(), false),
            (false, operator_role.clone(), true),
        ]
    );
    // The operator reads the audit too.
    let (code, stdout, stderr) =
        relay_cli(db, &["audit", "--actor", "alice", database[0], database[1]]).await?;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.matches(" alice ").count(), 2, "{stdout}");
    let operator = pool_as(db, &roles.operator).await?;
    refused(&operator, "UPDATE outbox_replay_audit SET actor = 'bob'").await;
    refused(&operator, "DELETE FROM outbox_replay_audit").await;
    refused(&operator, "TRUNCATE outbox_events").await;
    refused(&operator, "DROP TABLE outbox_events").await;
    // A client cannot claim another session role in the audit: the database stamps it.
    let stamped: Option<String> = sqlx::query_scalar(
        "INSERT INTO outbox_replay_audit (actor, filter, event_count, event_ids, session_role)
         VALUES ('mallory', '{}', 0, '{}', 'postgres') RETURNING session_role",
    )
    .fetch_one(&operator)
    .await?;
    assert_eq!(stamped.as_deref(), Some(roles.operator.as_str()));

    for pool in [writer, relay_pool, consumer, operator] {
        pool.close().await;
    }
    Ok(())
}
