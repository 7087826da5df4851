//! The built `outbox-relay` binary refuses every kind of bad flag value at once: a non-zero
//! exit, a message that names the flag (or what is wrong), and never the password of a URL.
//!
//! Every invocation points at servers that do not exist (port 1), so a value wrongly
//! accepted makes the command hang on retries, which fails the test, and touches nothing.
//! A refusal must come within 5 s: before the relay serves or connects anything.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use anyhow::Result;

const SECRET: &str = "SECRET";
const NO_DB: &str = "postgres://nobody:SECRET@127.0.0.1:1/none";
const NO_BROKER: &str = "amqp://nobody:SECRET@127.0.0.1:1/%2f";

/// Runs the binary with `args` (no URL from the environment); returns (code, stdout+stderr).
async fn run(args: &[&str]) -> Result<(i32, String)> {
    let mut command = tokio::process::Command::new(integration_tests::relay_binary()?);
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(5), command.output())
        .await
        .map_err(|_| {
            anyhow::anyhow!("outbox-relay {args:?} did not exit within 5 s: a bad value was taken, or refused late")
        })??;
    Ok((
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

/// `run` with harmless servers and an ephemeral HTTP port, with `extra` flags (which take
/// the place of those defaults they name: a flag given twice would be refused for that).
fn run_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run"];
    for (flag, value) in [
        ("--database-url", NO_DB),
        ("--amqp-url", NO_BROKER),
        ("--http-addr", "127.0.0.1:0"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    args
}

/// An operator command on the harmless database, then `extra`.
fn op<'a>(command: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![command, "--database-url", NO_DB];
    args.extend_from_slice(extra);
    args
}

#[tokio::test]
async fn bad_values_of_every_flag_kind_are_refused_by_name_without_the_password() -> Result<()> {
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        // URLs: malformed, wrong scheme, empty; each with a password that must not show.
        (
            run_args(&["--database-url", "postgres://u:SECRET@host:notaport/db"]),
            &["--database-url", "port"],
        ),
        (
            run_args(&["--database-url", "mysql://u:SECRET@host/db"]),
            &["--database-url", "postgres://"],
        ),
        (run_args(&["--database-url", ""]), &["--database-url"]),
        (
            run_args(&["--database-url", "postgres://u:SEC/RET@host/db"]),
            &["--database-url"],
        ),
        (
            run_args(&["--amqp-url", "amqp://u:SECRET@"]),
            &["--amqp-url", "host"],
        ),
        (
            run_args(&["--amqp-url", "http://u:SECRET@host/"]),
            &["--amqp-url", "amqp://"],
        ),
        (run_args(&["--amqp-url", ""]), &["--amqp-url", "amqp://"]),
        (
            run_args(&["--amqp-url", "amqp://u:SECRET@host:99999/%2f"]),
            &["--amqp-url"],
        ),
        (
            vec![
                "status",
                "--database-url",
                "postgres://u:SECRET@host:notaport/db",
            ],
            &["--database-url"],
        ),
        (
            vec![
                "replay",
                "--all",
                "--database-url",
                "postgresql://u:SECRET@[::1/db",
            ],
            &["--database-url"],
        ),
        // Durations: malformed, empty, negative, too large; and rules between them.
        (run_args(&["--poll-interval", "soon"]), &["--poll-interval"]),
        (run_args(&["--lease", ""]), &["--lease"]),
        (run_args(&["--retry-base", "-1s"]), &["--retry-base"]),
        (
            run_args(&["--confirm-timeout", "99999999999999999999d"]),
            &["--confirm-timeout"],
        ),
        (run_args(&["--poll-interval", "0s"]), &["--poll-interval"]),
        (run_args(&["--heartbeat", "1500ms"]), &["--heartbeat"]),
        (run_args(&["--db-timeout", "10ms"]), &["--db-timeout"]),
        (
            run_args(&["--lease", "5s"]),
            &["--lease", "--confirm-timeout"],
        ),
        (op("purge", &["--older-than", "-7d"]), &["--older-than"]),
        (op("status", &["--max-lag", "a while"]), &["--max-lag"]),
        // Numbers: out of range, negative, not numbers, not finite.
        (run_args(&["--batch-size", "0"]), &["--batch-size"]),
        (run_args(&["--batch-size", "100000"]), &["--batch-size"]),
        (run_args(&["--batch-size", "-1"]), &["--batch-size"]),
        (
            run_args(&["--in-flight-batches", "17"]),
            &["--in-flight-batches"],
        ),
        (run_args(&["--max-attempts", "-5"]), &["--max-attempts"]),
        (
            run_args(&["--max-message-size", "-5"]),
            &["--max-message-size"],
        ),
        (
            run_args(&["--max-message-size", "10"]),
            &["--max-message-size"],
        ),
        (
            run_args(&["--max-message-size", "99999999999999999999999"]),
            &["--max-message-size"],
        ),
        (run_args(&["--retry-factor", "NaN"]), &["--retry-factor"]),
        (run_args(&["--retry-factor", "-2"]), &["--retry-factor"]),
        (run_args(&["--retry-factor", "fast"]), &["--retry-factor"]),
        (op("status", &["--top", "0"]), &["--top"]),
        (op("replay", &["--all", "--limit", "-3"]), &["--limit"]),
        (op("purge", &["--batch-size", "1000001"]), &["--batch-size"]),
        // Names and templates.
        (run_args(&["--exchange", ""]), &["--exchange"]),
        (
            run_args(&["--routing-key", ""]),
            &["--routing-key", "empty"],
        ),
        (
            run_args(&["--routing-key", "{category}.{eventtype}"]),
            &["--routing-key", "{eventtype}"],
        ),
        (run_args(&["--relay-id", ""]), &["--relay-id"]),
        (run_args(&["--http-addr", "localhost"]), &["--http-addr"]),
        // Enumerations, subcommands, positional values.
        (vec!["frobnicate"], &["frobnicate"]),
        (
            op("status", &["--log-format", "xml"]),
            &["--log-format", "text, json"],
        ),
        (op("replay", &["--status", "alive"]), &["--status", "dead"]),
        (op("wakeup", &["sometimes"]), &["sometimes", "notify, poll"]),
        (vec!["catalog", "export", "--format", "yaml"], &["--format"]),
        (op("inspect", &["not-a-uuid"]), &["<ID>"]),
        (op("replay", &["--tenant", "1 OR 1=1"]), &["--tenant"]),
        // Operator filters: unknown, near misses, hostile text.
        (
            vec![
                "replay",
                "--database-url",
                NO_DB,
                "--event-type",
                "TICKET_CRATED",
            ],
            &["--event-type", "did you mean TICKET_CREATED?"],
        ),
        (
            vec!["discard", "--database-url", NO_DB, "--category", "Biling"],
            &["--category", "did you mean Billing?"],
        ),
        (
            vec![
                "replay",
                "--database-url",
                NO_DB,
                "--since",
                "\u{1b}[2Jyesterday",
            ],
            &["--since"],
        ),
        (
            vec!["replay", "--database-url", NO_DB, "--ordering-key", "a\tb"],
            &["--ordering-key", "control"],
        ),
        (
            vec!["catalog", "schema", "TICKET_CRATED"],
            &["TICKET_CRATED", "did you mean TICKET_CREATED?"],
        ),
    ];
    let mut failures = Vec::new();
    for (args, expected) in &cases {
        let (code, output) = run(args).await?;
        let named = expected.iter().all(|word| output.contains(word));
        if code == 0 || !named || output.contains(SECRET) || output.contains('\u{1b}') {
            failures.push(format!("{args:?} -> exit {code}: {output}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
    Ok(())
}

#[tokio::test]
async fn catalog_schema_takes_any_case_and_refuses_with_a_suggestion() -> Result<()> {
    let (code, output) = run(&["catalog", "schema", "ticket_created"]).await?;
    assert_eq!(code, 0, "{output}");
    let schema: serde_json::Value = serde_json::from_str(&output)?;
    assert!(schema["properties"]["ticketId"].is_object(), "{schema}");
    let (code, output) = run(&["catalog", "schema", "payload.ticketcreated.v1"]).await?;
    assert_eq!(code, 0, "{output}");
    Ok(())
}
