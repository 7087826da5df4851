//! The binary's commands, one module per family. Each turns parsed flags into calls of the
//! `outbox_relay` library and prints what it reports; none holds logic of its own.

pub mod catalog;
pub mod migrate;
pub mod ops;
pub mod run;
pub mod wakeup;

use anyhow::{Result, anyhow};
use serde::Serialize;
use sqlx::{ConnectOptions, Connection, PgPool};

use outbox_relay::foundation::config::connect_options;
use outbox_relay::foundation::db::CONNECT_TIMEOUT;
use outbox_relay::foundation::diagnosis;
use outbox_relay::foundation::mask::mask_url;

use crate::cli::{DatabaseArgs, OutputFormat};

/// The database a command acts on: its pool, and its URL as outputs may show it.
pub struct Database {
    /// A small pool on it.
    pub pool: PgPool,
    /// The URL with its password masked.
    pub shown: String,
}

impl Database {
    /// `error` as the operator should read it: when a database error caused it, which
    /// database, the cause in a few words and what to do.
    pub fn explain(&self, error: impl Into<anyhow::Error>) -> anyhow::Error {
        let error = error.into();
        match diagnosis::database_in_chain(error.as_ref()) {
            Some(cause) => anyhow!("database {}: {cause}", self.shown),
            None => error,
        }
    }
}

/// The one way a command opens the database. It connects once at the start, so a refused
/// port, a missing database or a wrong password is reported at once and by its cause (a
/// pool would only time out); a malformed URL is refused naming the flag, never showing
/// its password.
pub async fn connect(database: &DatabaseArgs) -> Result<Database> {
    let url = &database.database_url;
    let options = connect_options(url).map_err(anyhow::Error::msg)?;
    let pool = outbox_relay::pool_for(url, 2)?;
    let shown = mask_url(url);
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
        }
        Ok(Err(error)) => {
            return Err(anyhow!("database {shown}: {}", diagnosis::database(&error)));
        }
        Err(_) => {
            return Err(anyhow!(
                "database {shown}: no answer within {} s (is the host reachable?)",
                CONNECT_TIMEOUT.as_secs()
            ));
        }
    }
    Ok(Database { pool, shown })
}

/// Prints a report as pretty JSON (with a `database` field) or as its text rendering
/// (under a line naming the database).
pub fn print_report<R: Serialize>(
    format: OutputFormat,
    database: &Database,
    report: &R,
    text: impl FnOnce(&R) -> String,
) -> Result<()> {
    match format {
        OutputFormat::Json => {
            let mut value = serde_json::to_value(report)?;
            if let serde_json::Value::Object(fields) = &mut value {
                fields.insert("database".to_owned(), database.shown.clone().into());
            }
            write_stdout(&format!("{}\n", serde_json::to_string_pretty(&value)?))
        }
        OutputFormat::Text => {
            write_stdout(&format!("database  {}\n{}", database.shown, text(report)))
        }
    }
}

/// Writes `text` to standard output. A reader that stopped early (`| head`) is not an
/// error: the output it wanted went out.
pub fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}
