//! Order is per tenant: the ordering scope is (tenant, ordering key). One tenant's dead
//! head never holds another tenant's events on the same key, nor the key's tenant-less
//! events; within each scope, events still go out in seq order.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::Result;
use integration_tests::{RunningRelay, relay_cli, relay_config, wait_until, with_db_and_broker};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

async fn insert(pool: &PgPool, tenant: Option<Uuid>, key: &str, payload: &Value) -> Result<Uuid> {
    Ok(sqlx::query_scalar(
        "INSERT INTO outbox_events (event_type, payload, tenant_id, ordering_key)
         VALUES ('TICKET_UPDATED', $1, $2, $3) RETURNING id",
    )
    .bind(payload)
    .bind(tenant)
    .bind(key)
    .fetch_one(pool)
    .await?)
}

fn small() -> Value {
    json!({"ticketId": Uuid::now_v7(), "updatedFields": ["status"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_dead_head_does_not_hold_another_tenants_events_on_the_same_key() -> Result<()>
{
    with_db_and_broker(&["#"], async |db, broker| {
        let key = format!("order:{}", Uuid::now_v7());
        let tenant_a = Uuid::now_v7();
        let tenant_b = Uuid::now_v7();
        // Tenant A's head can never be published (larger than the relay's message limit).
        let big = json!({"ticketId": Uuid::now_v7(), "blob": "x".repeat(100 * 1024)});
        let a_head = insert(&db.pool, Some(tenant_a), &key, &big).await?;
        let a_behind = insert(&db.pool, Some(tenant_a), &key, &small()).await?;
        // Tenant B and tenant-less events on the same key, written after A's, one of B's in
        // a library batch that spans both tenants' scopes.
        let b_first = insert(&db.pool, Some(tenant_b), &key, &small()).await?;
        let unscoped = insert(&db.pool, None, &key, &small()).await?;
        let mut tx = db.pool.begin().await?;
        let batch = [
            outbox_core::NewEvent::new(&catalog_types::TicketUpdated {
                tenant_id: tenant_b,
                ..<catalog_types::TicketUpdated as catalog_types::CatalogEvent>::example()
            })?
            .with_options(outbox_core::EmitOptions::new().ordering_key(key.clone())),
            outbox_core::NewEvent::new(&catalog_types::TicketUpdated {
                tenant_id: tenant_a,
                ..<catalog_types::TicketUpdated as catalog_types::CatalogEvent>::example()
            })?
            .with_options(outbox_core::EmitOptions::new().ordering_key(key.clone())),
        ];
        let batch_ids = outbox_core::emit_batch(&mut tx, &batch).await?;
        tx.commit().await?;
        let (b_second, a_last) = (batch_ids[0], batch_ids[1]);

        let mut config = relay_config(db, broker);
        config.max_message_size = 64 * 1024;
        let relay = RunningRelay::start(config);
        let received = broker.collect(3, Duration::from_secs(30)).await?;
        let ids: Vec<String> = received.iter().map(|m| m.message_id.clone()).collect();
        assert_eq!(
            ids.iter()
                .filter(|id| **id == b_first.to_string() || **id == b_second.to_string())
                .collect::<Vec<_>>(),
            vec![&b_first.to_string(), &b_second.to_string()],
            "tenant B's events go out, in order, while tenant A's head is dead: {ids:?}"
        );
        assert!(ids.contains(&unscoped.to_string()), "{ids:?}");

        // Tenant A's later events wait behind its dead head, and `status` names the tenant.
        let pool = db.pool.clone();
        wait_until(Duration::from_secs(30), "tenant A's head is dead", || {
            let pool = pool.clone();
            async move {
                let status: String =
                    sqlx::query_scalar("SELECT status FROM outbox_event_status WHERE id = $1")
                        .bind(a_head)
                        .fetch_one(&pool)
                        .await?;
                Ok(status == "dead")
            }
        })
        .await?;
        let waiting: Vec<String> = sqlx::query_scalar(
            "SELECT status FROM outbox_event_status WHERE id = ANY($1) ORDER BY seq",
        )
        .bind([a_behind, a_last])
        .fetch_all(&db.pool)
        .await?;
        assert_eq!(waiting, ["pending", "pending"]);
        let (code, stdout, stderr) = relay_cli(db, &["status", "--format", "json"]).await?;
        assert_eq!(code, 0, "{stdout}{stderr}");
        let report: Value = serde_json::from_str(&stdout)?;
        let blocked = report["blockedKeys"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(blocked.len(), 1, "{blocked:?}");
        assert_eq!(blocked[0]["tenantId"], json!(tenant_a.to_string()));
        assert_eq!(blocked[0]["orderingKey"], json!(key));
        assert_eq!(blocked[0]["waiting"], json!(2));
        relay.stop().await?;
        Ok(())
    })
    .await
}
