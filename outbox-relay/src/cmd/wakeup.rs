//! `wakeup [notify|poll]`: print the database's wake-up mode, or switch it.

use anyhow::Result;
use tracing::info;

use outbox_relay::ops::wakeup;

use crate::cli::WakeupArgs;

/// Prints the mode, or switches it (running relays follow within seconds) and prints the
/// new one.
pub async fn wakeup(args: WakeupArgs) -> Result<()> {
    let db = super::connect(&args.database).await?;
    let mode = match args.mode {
        None => wakeup::current(&db.pool).await,
        Some(mode) => wakeup::switch(&db.pool, mode).await,
    };
    db.pool.close().await;
    // Standard output carries only the mode, for scripts; the database goes to stderr.
    eprintln!("database  {}", db.shown);
    let mode = mode.map_err(|error| anyhow::anyhow!("wake-up mode of {}: {error}", db.shown))?;
    if args.mode.is_some() {
        info!(mode, "wake-up mode set");
    }
    super::write_stdout(&format!("{mode}\n"))
}
