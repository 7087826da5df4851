//! `catalog list|schema|export|diff`: the event catalog, for people and for other services.

use anyhow::{Context, Result, bail};

use catalog_types::diff::{CatalogDiff, Snapshot};

use crate::cli::{CatalogCommand, DiffFormat, ExportFormat, TableShape};

/// Prints (or writes to `--output`) what `command` asks for.
pub fn catalog(command: CatalogCommand) -> Result<()> {
    let registry = catalog_types::registry();
    let text = match command {
        CatalogCommand::List => outbox_relay::ops::catalog::list(registry),
        CatalogCommand::Schema { event } => {
            // Any case; a near miss gets the closest name as a suggestion.
            let entry = match registry.lookup(&event) {
                Ok(entry) => entry,
                Err(unknown) => bail!(
                    "`{}` is neither an event type nor a schema ref of the catalog{} (see `outbox-relay catalog list`)",
                    event.escape_debug(),
                    unknown.hint()
                ),
            };
            serde_json::to_string_pretty(&entry.schema)? + "\n"
        }
        CatalogCommand::Export {
            format,
            table_shape,
            output,
        } => {
            let text = match (format, table_shape) {
                (ExportFormat::Json, None) => catalog_types::export::json(registry)?,
                (ExportFormat::Sql, None | Some(TableShape::Outbox)) => {
                    catalog_types::export::sql(registry)?
                }
                (ExportFormat::Sql, Some(TableShape::Platform)) => {
                    catalog_types::export::platform_sql(registry)?
                }
                (ExportFormat::Markdown, None) => catalog_types::export::markdown(registry),
                (ExportFormat::Typescript, None) => catalog_types::export::typescript(registry)?,
                (_, Some(_)) => bail!("--table-shape applies only to --format sql"),
            };
            if let Some(path) = output {
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok(());
            }
            text
        }
        CatalogCommand::Diff { old, new, format } => return diff(&old, &new, format),
    };
    super::write_stdout(&text)?;
    Ok(())
}

/// Prints the changes from `old` to `new`; an error (non-zero exit) when one breaks
/// consumers without a schema ref version bump.
fn diff(old: &std::path::Path, new: &std::path::Path, format: DiffFormat) -> Result<()> {
    let diff = CatalogDiff::compare(&Snapshot::read(old)?, &Snapshot::read(new)?);
    let text = match format {
        DiffFormat::Text => diff.to_text(),
        DiffFormat::Json => {
            serde_json::to_string_pretty(&serde_json::json!({
                "breaking": diff.is_breaking(),
                "events": diff.events,
            }))? + "\n"
        }
    };
    super::write_stdout(&text)?;
    let breaking = diff.breaking().count();
    if breaking > 0 {
        bail!(
            "{breaking} breaking change(s) from {} to {} without a schema ref version bump",
            old.display(),
            new.display()
        );
    }
    Ok(())
}
