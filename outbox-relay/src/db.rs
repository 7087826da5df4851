//! The one way the relay and its operator commands connect to the database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use crate::error::RelayError;
use crate::mask::mask_url;

/// A lazily connecting pool for `url`; a malformed URL is refused with the reason.
pub fn pool_for(url: &str, max_connections: u32) -> Result<PgPool, RelayError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(RelayError::Config(format!(
            "--database-url {}: expected a postgres:// or postgresql:// URL",
            mask_url(url)
        )));
    }
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| RelayError::Config(format!("--database-url {}: {e}", mask_url(url))))?;
    Ok(outbox_core::tcp_nodelay::pool_options(&options)
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options))
}
