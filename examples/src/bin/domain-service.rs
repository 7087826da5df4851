//! A domain service: opens a ticket (row + event in one transaction), then emits one event of
//! every catalog category in a second transaction. Prints the tenant it used.
//!
//! `cargo run -p outbox-examples --bin domain-service`

use anyhow::Result;
use uuid::Uuid;

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pool = sqlx::PgPool::connect(&url).await?;
    let tenant = Uuid::now_v7();

    let mut tx = pool.begin().await?;
    outbox_examples::create_business_tables(&mut tx).await?;
    let (ticket, event) =
        outbox_examples::open_ticket(&mut tx, tenant, "VPN is down for the Denver office").await?;
    tx.commit().await?;
    println!("opened ticket {ticket} (event {event})");

    let events = outbox_examples::one_of_every_category(tenant)?;
    let mut tx = pool.begin().await?;
    let ids = outbox_core::emit_batch(&mut tx, &events).await?;
    tx.commit().await?;
    for (event, id) in events.iter().zip(&ids) {
        println!("emitted {:<28} {id}", event.event_type());
    }
    println!("tenant {tenant}");
    Ok(())
}
