//! The smallest useful program: migrate, then write a ticket row and its event in one
//! transaction. Run the relay (`outbox-relay run`) to publish it.
//!
//! `cargo run -p outbox-examples --bin quickstart`

use anyhow::Result;
use uuid::Uuid;

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pool = sqlx::PgPool::connect(&url).await?;
    outbox_core::migrate(&pool).await?;
    let mut tx = pool.begin().await?;
    outbox_examples::create_business_tables(&mut tx).await?;
    let (ticket, event) =
        outbox_examples::open_ticket(&mut tx, Uuid::now_v7(), "Printer on fire").await?;
    tx.commit().await?; // the ticket and its event exist together, or not at all
    println!("ticket {ticket} created; event {event} is in the outbox");
    Ok(())
}
