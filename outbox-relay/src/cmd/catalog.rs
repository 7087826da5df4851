//! `catalog list|schema|export`: the event catalog, for people and for other services.

use std::io::Write;

use anyhow::{Context, Result, bail};

use crate::cli::{CatalogCommand, ExportFormat};

/// Prints (or writes to `--output`) what `command` asks for.
pub fn catalog(command: CatalogCommand) -> Result<()> {
    let registry = catalog_types::registry();
    let text = match command {
        CatalogCommand::List => catalog_types::export::table(registry),
        CatalogCommand::Schema { event } => {
            let Some(entry) = registry.find(&event) else {
                bail!(
                    "`{event}` is neither an event type nor a schema ref of the catalog (see `outbox-relay catalog list`)"
                );
            };
            serde_json::to_string_pretty(&entry.schema)? + "\n"
        }
        CatalogCommand::Export { format, output } => {
            let text = match format {
                ExportFormat::Json => catalog_types::export::json(registry)?,
                ExportFormat::Sql => catalog_types::export::sql(registry)?,
                ExportFormat::Markdown => catalog_types::export::markdown(registry),
            };
            if let Some(path) = output {
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok(());
            }
            text
        }
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
