//! The binary's commands, one module per family. Each turns parsed flags into calls of the
//! `outbox_relay` library and prints what it reports; none holds logic of its own.

pub mod catalog;
pub mod migrate;
pub mod ops;
pub mod run;
pub mod wakeup;

use anyhow::Result;
use serde::Serialize;
use sqlx::PgPool;

use crate::cli::{DatabaseArgs, OutputFormat};

/// The one way a command opens the database: a small pool that connects on first use; a
/// malformed URL is refused naming the flag (and never showing its password).
pub fn connect(database: &DatabaseArgs) -> Result<PgPool> {
    Ok(outbox_relay::pool_for(&database.database_url, 2)?)
}

/// Prints a report as pretty JSON or as its text rendering.
pub fn print_report<R: Serialize>(
    format: OutputFormat,
    report: &R,
    text: impl FnOnce(&R) -> String,
) -> Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(report)?),
        OutputFormat::Text => print!("{}", text(report)),
    }
    Ok(())
}
