//! `wakeup [notify|poll]`: print the database's wake-up mode, or switch it.

use anyhow::Result;
use tracing::info;

use outbox_relay::mask::mask_url;
use outbox_relay::ops::wakeup;

use crate::cli::WakeupArgs;

/// Prints the mode, or switches it (running relays follow within seconds) and prints the
/// new one.
pub async fn wakeup(args: WakeupArgs) -> Result<()> {
    let pool = super::connect(&args.database)?;
    let mode = match args.mode {
        None => wakeup::current(&pool).await,
        Some(mode) => wakeup::switch(&pool, mode).await,
    };
    pool.close().await;
    let mode = mode.map_err(|error| {
        anyhow::anyhow!(
            "wake-up mode of {}: {error}",
            mask_url(&args.database.database_url)
        )
    })?;
    if args.mode.is_some() {
        info!(mode, "wake-up mode set");
    }
    println!("{mode}");
    Ok(())
}
