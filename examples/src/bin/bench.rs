//! Measures emit and relay throughput on the local servers, in a database of its own.
//!
//! `cargo run --release -p outbox-examples --bin bench -- [EVENTS]`
//!
//! 1. emit: EVENTS events in transactions of 500 (one `emit_batch` each), then 5,000
//!    single-event transactions from 8 connections, each with the NOTIFY trigger on and off;
//! 2. relay: a backlog of EVENTS events on 2,000 ordering keys, drained by one relay;
//! 3. the process's peak resident memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use catalog_types::{CatalogEvent, TicketUpdated};
use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use outbox_core::NewEvent;
use outbox_relay::RelayConfig;
use outbox_relay::relay::Health;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn events(n: usize, keys: usize) -> Result<Vec<NewEvent>> {
    let tenant = Uuid::now_v7();
    let tickets: Vec<Uuid> = (0..keys).map(|_| Uuid::now_v7()).collect();
    (0..n)
        .map(|i| {
            let event = TicketUpdated {
                tenant_id: tenant,
                ticket_id: tickets[i % keys],
                ..TicketUpdated::example()
            };
            Ok(NewEvent::new(&event)?)
        })
        .collect()
}

async fn emit_batched(pool: &PgPool, n: usize) -> Result<f64> {
    let all = events(n, 2_000)?;
    let started = Instant::now();
    for chunk in all.chunks(500) {
        let mut tx = pool.begin().await?;
        outbox_core::emit_batch(&mut tx, chunk).await?;
        tx.commit().await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn emit_single(pool: &PgPool, transactions: usize, connections: usize) -> Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let pool = pool.clone();
        let per = transactions / connections;
        tasks.push(tokio::spawn(async move {
            for event in events(per, 100)? {
                let mut tx = pool.begin().await?;
                outbox_core::emit_batch(&mut tx, std::slice::from_ref(&event)).await?;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(transactions as f64 / started.elapsed().as_secs_f64())
}

async fn set_notify_trigger(pool: &PgPool, on: bool) -> Result<()> {
    let sql = if on {
        "ALTER TABLE outbox_events ENABLE TRIGGER outbox_events_notify"
    } else {
        "ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_notify"
    };
    sqlx::query(sql).execute(pool).await?;
    sqlx::query("TRUNCATE outbox_events").execute(pool).await?;
    Ok(())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let n: usize = std::env::args()
        .nth(1)
        .map(|v| v.parse())
        .transpose()
        .context("EVENTS is a number")?
        .unwrap_or(50_000);
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let amqp_url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let admin: PgConnectOptions = admin_url.parse()?;
    let name = format!("outbox_bench_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let mut conn = admin.connect().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let options = admin.clone().database(&name);
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect_with(options)
        .await?;
    outbox_core::migrate(&pool).await?;

    println!("| measurement | result |\n| --- | --- |");
    for on in [true, false] {
        set_notify_trigger(&pool, on).await?;
        let label = if on { "NOTIFY on" } else { "NOTIFY off" };
        let rate = emit_batched(&pool, n).await?;
        println!("| emit, {n} events in transactions of 500, {label} | {rate:.0} events/s |");
        sqlx::query("TRUNCATE outbox_events").execute(&pool).await?;
        let rate = emit_single(&pool, 5_000, 8).await?;
        println!(
            "| emit, 5000 one-event transactions from 8 connections, {label} | {rate:.0} tx/s |"
        );
    }
    set_notify_trigger(&pool, true).await?;

    // Relay: drain a backlog.
    let exchange = format!("{name}.x");
    let amqp = Connection::connect(&amqp_url, ConnectionProperties::default()).await?;
    let channel = amqp.create_channel().await?;
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            name.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    emit_batched(&pool, n).await?;
    let mut config = RelayConfig::new(url_for(&admin_url, &name), amqp_url.clone());
    config.exchange = exchange.clone();
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let relay = tokio::spawn(outbox_relay::run(
        config,
        cancel.clone(),
        Arc::new(Health::default()),
    ));
    loop {
        let delivered: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE status = 'delivered'")
                .fetch_one(&pool)
                .await?;
        if delivered as usize >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "| relay, backlog of {n} events on 2000 keys, batch 500 | {:.0} events/s ({elapsed:.1?}) |",
        n as f64 / elapsed.as_secs_f64()
    );
    cancel.cancel();
    relay.await??;
    println!(
        "| peak resident memory of this process (emitters + relay) | {:.0} MiB |",
        peak_rss_mib()
    );

    channel
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await?;
    channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await?;
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}

fn url_for(admin_url: &str, database: &str) -> String {
    match url::Url::parse(admin_url) {
        Ok(mut url) => {
            url.set_path(database);
            url.to_string()
        }
        Err(_) => admin_url.to_owned(),
    }
}
