//! `inspect`: one event's full row, as JSON with camelCase keys like every other report.

use sqlx::PgPool;
use uuid::Uuid;

/// The row of event `id` (its columns as camelCase keys; payload and headers as stored), or
/// `None` when there is no such event.
pub async fn inspect(pool: &PgPool, id: Uuid) -> Result<Option<serde_json::Value>, sqlx::Error> {
    Ok(crate::store::operator::inspect(pool, id)
        .await?
        .map(camel_case_columns))
}

/// Renames the top-level keys (column names) from snake_case to camelCase; nested values,
/// the payload's own keys included, are left exactly as stored.
fn camel_case_columns(row: serde_json::Value) -> serde_json::Value {
    match row {
        serde_json::Value::Object(columns) => columns
            .into_iter()
            .map(|(name, value)| (camel_case(&name), value))
            .collect(),
        other => other,
    }
}

fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_column_names_change() {
        let row = serde_json::json!({
            "event_type": "TICKET_CREATED",
            "locked_until": null,
            "payload": {"ticket_id": 1, "nested_key": {"a_b": 2}},
        });
        assert_eq!(
            camel_case_columns(row),
            serde_json::json!({
                "eventType": "TICKET_CREATED",
                "lockedUntil": null,
                "payload": {"ticket_id": 1, "nested_key": {"a_b": 2}},
            })
        );
    }
}
