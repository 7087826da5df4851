//! The guides under `docs/guides/` say only what is true. Their ```rust blocks are doctests
//! (`tests/src/guides.rs`); here:
//!
//! - every command of their ```sh blocks runs against the built `outbox-relay` (on a
//!   database with delivered and dead events, so the runbook's commands have something to
//!   act on) and succeeds; `outbox-relay run` starts and becomes ready;
//! - every ```sql block of the plain-SQL guide runs (statements with `$n` parameters are
//!   prepared by the server) and the payloads it writes are valid catalog payloads; the
//!   error it shows is the trigger's;
//! - the operating guide's configuration table is `outbox-relay run --help`, flag for flag,
//!   with the same variables and defaults; the flags and variables named anywhere exist; its
//!   metrics table is what a real relay exposes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use integration_tests::{
    RelayProcess, TestBroker, TestDb, amqp_url, emit_ticket, free_local_addr, http_get, log_path,
    relay_binary, wait_until, wait_until_settled, with_db_and_broker,
};
use outbox_core::EmitOptions;
use uuid::Uuid;

const GUIDES: [&str; 5] = [
    "getting-started.md",
    "producing-with-sql.md",
    "consuming.md",
    "operating.md",
    "event-types.md",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn guide(name: &str) -> String {
    std::fs::read_to_string(root().join("docs/guides").join(name)).unwrap()
}

/// The fenced code blocks of a Markdown text: (language, content), fences indented in list
/// items included.
fn code_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for line in markdown.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                if let Some(language) = trimmed.strip_prefix("```") {
                    open = Some((language.trim().to_owned(), indent, String::new()));
                }
            }
            Some((language, fence_indent, content)) => {
                if trimmed.starts_with("```") {
                    blocks.push((language.clone(), std::mem::take(content)));
                    open = None;
                } else {
                    content.push_str(line.get(*fence_indent..).unwrap_or(trimmed));
                    content.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    blocks
}

/// The commands of a shell block: comments dropped, `\` continuations joined.
fn commands(block: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        let line = match line.find(" #") {
            Some(at) if !line[..at].contains('\'') => &line[..at],
            _ => line,
        };
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        commands.push(std::mem::take(&mut pending));
    }
    commands
}

fn help_text(args: &[&str]) -> String {
    let output = std::process::Command::new(relay_binary().unwrap())
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success(), "outbox-relay {args:?} --help");
    String::from_utf8(output.stdout).unwrap()
}

/// `--help` of `run`: flag → (env, default).
fn run_flags() -> BTreeMap<String, (Option<String>, Option<String>)> {
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help_text(&["run"]).lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("--") {
            let flag = rest.split([' ', '<']).next().unwrap().to_owned();
            flags.insert(flag.clone(), (None, None));
            current = Some(flag);
        } else if let Some(rest) = trimmed.strip_prefix("[env: ") {
            let env = rest
                .trim_end_matches(']')
                .split('=')
                .next()
                .unwrap()
                .to_owned();
            flags.get_mut(current.as_ref().unwrap()).unwrap().0 = Some(env);
        } else if let Some(rest) = trimmed.strip_prefix("[default: ") {
            flags.get_mut(current.as_ref().unwrap()).unwrap().1 =
                Some(rest.trim_end_matches(']').to_owned());
        }
    }
    flags.remove("help");
    flags
}

/// Every environment variable and flag any relay subcommand knows.
fn known_envs_and_flags() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut envs = BTreeSet::new();
    let mut flags = BTreeSet::new();
    let mut help_pages = vec![vec![]];
    for sub in [
        "run", "migrate", "catalog", "replay", "discard", "audit", "status", "inspect", "purge",
        "wakeup",
    ] {
        help_pages.push(vec![sub]);
    }
    for sub in ["list", "export", "schema"] {
        help_pages.push(vec!["catalog", sub]);
    }
    for page in help_pages {
        for line in help_text(&page).lines() {
            let trimmed = line
                .trim()
                .trim_start_matches("-h, ")
                .trim_start_matches("-V, ");
            if let Some(rest) = trimmed.strip_prefix("--") {
                flags.insert(rest.split([' ', '<', '=']).next().unwrap().to_owned());
            } else if let Some(rest) = trimmed.strip_prefix("[alias: --") {
                flags.insert(rest.trim_end_matches(']').to_owned());
            } else if let Some(rest) = trimmed.strip_prefix("[env: ") {
                envs.insert(
                    rest.trim_end_matches(']')
                        .split('=')
                        .next()
                        .unwrap()
                        .to_owned(),
                );
            }
        }
    }
    (envs, flags)
}

/// Words of `text` that start with `prefix` and go on with `[A-Za-z0-9_-]`.
fn words_with_prefix(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find(prefix) {
        let tail = &rest[start..];
        let end = prefix.len()
            + tail[prefix.len()..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(tail.len() - prefix.len());
        let preceded_by_word = rest[..start]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let starts_a_word = tail[prefix.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic());
        if !preceded_by_word && starts_a_word {
            found.insert(tail[..end].trim_end_matches('-').to_owned());
        }
        rest = &tail[end..];
    }
    found
}

#[test]
fn every_flag_and_variable_the_guides_name_exists() {
    let (envs, flags) = known_envs_and_flags();
    for name in GUIDES {
        // Cargo's and Docker's own flags (`cargo test -p … --test …`, `docker run --rm`) are
        // not the relay's: their lines and code spans are left out.
        let text: String = without_tool_spans(&guide(name))
            .lines()
            .filter(|line| !line.contains("cargo ") && !line.contains("docker "))
            .collect::<Vec<_>>()
            .join("\n");
        for env in words_with_prefix(&text, "OUTBOX_") {
            assert!(
                envs.contains(&env),
                "{name}: `{env}` is no variable of outbox-relay"
            );
        }
        for flag in words_with_prefix(&text, "--") {
            let flag = flag.trim_start_matches("--");
            assert!(
                flags.contains(flag),
                "{name}: `--{flag}` is no flag of outbox-relay"
            );
        }
    }
}

/// `markdown` without its inline code spans that are `cargo …` or `docker …` commands (a span
/// may run over a line break).
fn without_tool_spans(markdown: &str) -> String {
    let mut kept = String::new();
    for (index, piece) in markdown.split('`').enumerate() {
        let tool = index % 2 == 1 && (piece.starts_with("cargo ") || piece.starts_with("docker "));
        if !tool {
            kept.push_str(piece);
        }
        kept.push('`');
    }
    kept
}

/// The rows of the operating guide's configuration table: (flags, envs, default).
fn configuration_table() -> Vec<(Vec<String>, Vec<String>, String)> {
    let text = guide("operating.md");
    let table = text
        .split("## Configuration reference")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    table
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let codes = |cell: &str| -> Vec<String> {
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect()
            };
            let flags = codes(cells[0])
                .iter()
                .map(|f| f.trim_start_matches("--").to_owned())
                .collect();
            (flags, codes(cells[1]), cells[2].to_owned())
        })
        .collect()
}

#[test]
fn the_configuration_reference_is_run_help_flag_for_flag() {
    let help = run_flags();
    let table = configuration_table();
    let documented: BTreeSet<&String> = table.iter().flat_map(|(flags, _, _)| flags).collect();
    let real: BTreeSet<&String> = help.keys().collect();
    assert_eq!(
        documented, real,
        "operating.md's configuration table and `outbox-relay run --help` list different flags"
    );
    for (flags, envs, default) in &table {
        let help_envs: Vec<String> = flags.iter().filter_map(|f| help[f].0.clone()).collect();
        assert_eq!(envs, &help_envs, "variables of {flags:?}");
        if let [flag] = flags.as_slice() {
            match &help[flag].1 {
                Some(real) => assert_eq!(default, &format!("`{real}`"), "default of --{flag}"),
                None => assert!(
                    default == "off" || !default.starts_with('`'),
                    "--{flag} has no default, the guide says {default}"
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shell commands
// ---------------------------------------------------------------------------------------

/// Runs one guide command with `bash` in `dir`, the relay binary first on `PATH`.
async fn run_shell(
    command: &str,
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(i32, String, String)> {
    let bin = relay_binary()?.parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("bash")
            .args(["-c", command])
            .current_dir(dir)
            .env("PATH", path)
            .env_remove("OUTBOX_HTTP_ADDR")
            .envs(env)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("`{command}` did not finish"))??;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// `outbox-relay run …` from a guide: it must start, become ready, and exit 0 on SIGTERM.
async fn run_relay_command(
    command: &str,
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<()> {
    let addr = free_local_addr()?;
    let bin = relay_binary()?.parent().unwrap().to_path_buf();
    let log = log_path("guide-run");
    let mut child = tokio::process::Command::new("bash")
        .args(["-c", &format!("exec {command}")])
        .current_dir(dir)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .envs(env)
        .env("OUTBOX_HTTP_ADDR", addr.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()?;
    wait_until(
        Duration::from_secs(60),
        &format!("`{command}` is ready"),
        || async { Ok(matches!(http_get(addr, "/readyz").await, Ok((200, _)))) },
    )
    .await
    .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
    let pid = child.id().context("exited")?;
    integration_tests::send_signal(pid, "TERM").await?;
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait()).await??;
    ensure!(
        status.success(),
        "`{command}` exited with {status} after SIGTERM"
    );
    Ok(())
}

/// A `cargo …` line of a guide is not run here (the suite itself builds and tests the
/// workspace); its package and test target must exist.
fn check_cargo_command(command: &str) -> Result<()> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let cargo = words
        .iter()
        .position(|w| *w == "cargo")
        .context("no cargo")?;
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
    };
    if words.get(cargo + 1) == Some(&"install") {
        return check_cargo_install(command);
    }
    let package = after("-p").context("a cargo command without -p")?;
    let dir = match *package {
        "catalog-types" | "outbox-core" | "outbox-relay" => root().join(package),
        "outbox-examples" => root().join("examples"),
        other => bail!("`{command}`: unknown package {other}"),
    };
    ensure!(dir.join("Cargo.toml").exists(), "{package}");
    if let Some(test) = after("--test") {
        ensure!(
            dir.join("tests").join(format!("{test}.rs")).exists(),
            "`{command}`: no test {test}"
        );
    }
    ensure!(
        ["test", "run", "build"].contains(&words[cargo + 1]),
        "`{command}`"
    );
    if words[cargo + 1] == "run" {
        relay_package_binary(&dir).with_context(|| format!("`{command}`"))?;
    }
    Ok(())
}

#[tokio::test]
async fn every_shell_command_of_the_guides_runs() -> Result<()> {
    // Delivered events of one tenant (bound), and dead ones (unbound, one attempt).
    with_db_and_broker(&["tickets.ticket_created"], async |db: &TestDb, broker: &TestBroker| {
        let tenant = Uuid::now_v7();
        let mut delivered = Vec::new();
        for _ in 0..3 {
            let event = catalog_types::TicketCreated {
                tenant_id: tenant,
                ticket_id: Uuid::now_v7(),
                created_by_user_id: None,
                created_at: None,
                updated_fields: None,
                changes: None,
            };
            let mut tx = db.pool.begin().await?;
            delivered.push(outbox_core::emit(&mut tx, &event).await?);
            tx.commit().await?;
        }
        let dead = emit_ticket(&db.pool, Uuid::now_v7(), EmitOptions::new()).await?;
        let dead_too = emit_ticket(&db.pool, Uuid::now_v7(), EmitOptions::new()).await?;
        let log = log_path("guides-setup");
        let mut relay = RelayProcess::start(db, broker, &["--max-attempts", "1"], &log)?;
        let all: Vec<Uuid> = delivered.iter().copied().chain([dead, dead_too]).collect();
        wait_until_settled(&db.pool, &all, Duration::from_secs(60)).await?;
        relay.signal("TERM").await?;
        relay.child.wait().await?;
        ensure!(integration_tests::event_state(&db.pool, dead).await?.status == "dead");

        let dir = std::env::temp_dir().join(format!("outbox-guides-{}", integration_tests::unique_suffix()));
        std::fs::create_dir_all(&dir)?;
        // The event-types guide registers a service's events from its export.
        let widget = catalog_types::EventDefinition {
            event_type: "acme.WIDGET_CREATED".to_owned(),
            name: "Widget Created".to_owned(),
            description: "A widget was made.".to_owned(),
            category: catalog_types::Category::Assets,
            payload_schema_ref: "acme.payload.WidgetCreated.v1".to_owned(),
            payload_schema: serde_json::json!({"type": "object", "properties": {"widgetId": {"type": "string"}}}),
        };
        std::fs::write(dir.join("acme-events.json"), serde_json::to_string(&[widget])?)?;
        let env: BTreeMap<String, String> = [
            ("DATABASE_URL", db.url()),
            ("AMQP_URL", amqp_url()),
            ("OUTBOX_EXCHANGE", broker.exchange.clone()),
            ("EVENT_ID", dead.to_string()),
            ("TENANT_ID", tenant.to_string()),
            ("USER", "guide-test".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();

        let mut ran = 0;
        let mut images = BTreeSet::new();
        for name in GUIDES {
            for (language, block) in code_blocks(&guide(name)) {
                if language != "sh" {
                    continue;
                }
                for command in commands(&block) {
                    // The relay run another way (`cargo run -p outbox-relay -- …`, `docker run …
                    // outbox-relay …`) is checked as that way, then runs as the relay's command.
                    if command.starts_with("docker build") {
                        images.insert(check_docker_build(&command).with_context(|| name.to_owned())?);
                        ran += 1;
                        continue;
                    }
                    let command = match relay_command_of(&command, &images, &env) {
                        Some(relay) => {
                            if command.starts_with("cargo ") {
                                check_cargo_command(&command).with_context(|| name.to_owned())?;
                            }
                            relay.with_context(|| format!("{name}: `{command}`"))?
                        }
                        None => command,
                    };
                    let program = command
                        .split_whitespace()
                        .find(|w| !w.contains('='))
                        .unwrap_or_default();
                    match program {
                        "outbox-relay" if command.split_whitespace().nth(1) == Some("run") => {
                            run_relay_command(&command, &dir, &env).await.with_context(|| name.to_owned())?;
                        }
                        "outbox-relay" => {
                            let (code, stdout, stderr) = run_shell(&command, &dir, &env).await?;
                            // A runbook shows replay and discard side by side on one event, so
                            // one of them finds nothing to do: its own exit code, and it says so.
                            let sub = command.split_whitespace().nth(1).unwrap_or_default();
                            let nothing_to_do = ["replay", "discard"].contains(&sub)
                                && code == i32::from(outbox_relay::ops::replay::NOTHING_TO_DO_EXIT_CODE)
                                && stdout.contains(&format!("nothing to {sub}: "));
                            ensure!(code == 0 || nothing_to_do, "{name}: `{command}` exited {code}\n{stdout}\n{stderr}");
                        }
                        "cargo" => check_cargo_command(&command).with_context(|| name.to_owned())?,
                        other => bail!("{name}: `{command}`: this test does not know how to check `{other}`"),
                    }
                    ran += 1;
                }
            }
        }
        ensure!(ran >= 20, "only {ran} commands found in the guides");

        // What the commands did: the export was written, the runbook's replay happened.
        let export: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("catalog.json"))?)?;
        ensure!(export.to_string().contains("payload.TicketCreated.v1"));
        let registered: Option<String> = sqlx::query_scalar(
            "SELECT payload_schema_ref FROM system_event_catalog WHERE event_type = 'acme.WIDGET_CREATED'",
        )
        .fetch_optional(&db.pool)
        .await?;
        ensure!(registered.as_deref() == Some("acme.payload.WidgetCreated.v1"), "the guide's migrate registered the service's events");
        let audit: Vec<String> = sqlx::query_scalar("SELECT actor FROM outbox_replay_audit")
            .fetch_all(&db.pool)
            .await?;
        ensure!(audit.iter().any(|a| a == "guide-test"), "the runbook's replay is audited: {audit:?}");
        ensure!(
            integration_tests::event_state(&db.pool, dead).await?.status != "dead",
            "the runbook replayed the dead event"
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------------------
// SQL of the plain-SQL guide
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_plain_sql_guide_runs_as_written() -> Result<()> {
    use sqlx::{Executor, SqlSafeStr};
    let db = TestDb::new().await?;
    let outcome = async {
        // The guide's business table.
        sqlx::query("CREATE TABLE tickets (id uuid PRIMARY KEY, tenant_id uuid, title text)")
            .execute(&db.pool)
            .await?;
        let text = guide("producing-with-sql.md");
        let blocks = code_blocks(&text);
        let mut executed = 0;
        for (language, sql) in blocks
            .iter()
            .filter(|(l, _)| l == "sql")
            .map(|(l, s)| (l, s.as_str()))
        {
            let _ = language;
            if sql.contains("$1") {
                // A driver's statement: the server parses and types it.
                let mut conn = db.pool.acquire().await?;
                conn.prepare(sqlx::AssertSqlSafe(sql.trim().trim_end_matches(';')).into_sql_str())
                    .await
                    .with_context(|| format!("prepare:\n{sql}"))?;
            } else {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&db.pool)
                    .await
                    .with_context(|| format!("run:\n{sql}"))?;
                executed += 1;
            }
        }
        ensure!(executed >= 3, "{executed} SQL blocks ran");

        // What they wrote: valid catalog payloads, with the catalog's ref and category.
        let rows: Vec<(String, String, String, serde_json::Value)> = sqlx::query_as(
            "SELECT event_type, schema_ref, category, payload FROM outbox_events ORDER BY seq",
        )
        .fetch_all(&db.pool)
        .await?;
        ensure!(rows.len() == 2, "the guide writes two events: {rows:?}");
        for (event_type, schema_ref, category, payload) in rows {
            let entry = catalog_types::registry()
                .by_event_type(&event_type)
                .context("in the catalog")?;
            ensure!(schema_ref == entry.schema_ref);
            ensure!(serde_json::to_value(entry.category)? == serde_json::json!(category));
            entry.validate(payload).map_err(|e| {
                anyhow::anyhow!("{event_type}: the guide's payload is invalid: {e}")
            })?;
        }

        // The dedupe example twice: still one event.
        let dedupe = blocks
            .iter()
            .find(|(l, s)| l == "sql" && s.contains("ON CONFLICT"))
            .context("the dedupe example")?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(dedupe.1.as_str()))
            .execute(&db.pool)
            .await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox_events WHERE dedupe_key = 'invoice-42-sent'",
        )
        .fetch_one(&db.pool)
        .await?;
        ensure!(count == 1, "{count} events for one dedupe key");

        // The refusal shown is the trigger's, word for word.
        let shown = blocks
            .iter()
            .find(|(l, s)| l == "text" && s.starts_with("ERROR:"))
            .context("the error example")?;
        let shown = shown.1.trim().trim_start_matches("ERROR:").trim();
        let error = sqlx::query(
            "INSERT INTO outbox_events (event_type, payload) VALUES ('TICKET_CREATD', '{}')",
        )
        .execute(&db.pool)
        .await
        .expect_err("an unknown type is refused");
        let message = error
            .as_database_error()
            .context("a database error")?
            .message()
            .to_owned();
        ensure!(
            message == shown,
            "the guide shows `{shown}`, the trigger says `{message}`"
        );
        Ok(())
    }
    .await;
    let cleaned = db.cleanup().await;
    outcome.and(cleaned)
}

// ---------------------------------------------------------------------------------------
// Metrics table
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_operating_guides_metrics_are_the_relays() -> Result<()> {
    let text = guide("operating.md");
    let documented: BTreeSet<String> = text
        .lines()
        .filter(|line| line.starts_with("| `outbox_"))
        .flat_map(|line| {
            let first_cell = line.split(" | ").next().unwrap().to_owned();
            words_with_prefix(&first_cell, "outbox_")
        })
        .collect();
    ensure!(documented.len() >= 15, "{documented:?}");

    with_db_and_broker(&["#"], async |db: &TestDb, broker: &TestBroker| {
        let log = log_path("guides-metrics");
        let mut relay = RelayProcess::start(db, broker, &[], &log)?;
        let ids = integration_tests::emit_tickets(&db.pool, 5, 2).await?;
        wait_until_settled(&db.pool, &ids, Duration::from_secs(60)).await?;
        let mut metrics = String::new();
        for _ in 0..100 {
            if let Ok((200, body)) = relay.get("/metrics").await {
                metrics = body;
                if metrics.contains("outbox_end_to_end_lag_seconds") {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        relay.signal("TERM").await?;
        relay.child.wait().await?;
        // Metric families: histogram series without their suffix.
        let exposed: BTreeSet<String> = metrics
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| line.split(['{', ' ']).next().unwrap().to_owned())
            .map(|name| {
                for suffix in ["_bucket", "_sum", "_count"] {
                    if let Some(base) = name.strip_suffix(suffix)
                        && metrics.contains(&format!("# TYPE {base} histogram"))
                    {
                        return base.to_owned();
                    }
                }
                name
            })
            .filter(|name| name.starts_with("outbox_"))
            .collect();
        let undocumented: Vec<&String> = exposed.difference(&documented).collect();
        let missing: Vec<&String> = documented.difference(&exposed).collect();
        ensure!(
            undocumented.is_empty() && missing.is_empty(),
            "operating.md's metrics table differs from /metrics: not documented {undocumented:?}, \
             not exposed {missing:?}"
        );
        Ok(())
    })
    .await
}

/// The README's guarantees name the tests that show them; a renamed or deleted test must not
/// leave a guarantee resting on nothing. Every `file::test` and `crate/tests/file.rs::test`
/// named in the section must be a test function of that file.
#[test]
fn every_test_the_readmes_guarantees_name_exists() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme.find("## Guarantees").expect("a Guarantees section");
    let section = &readme[start..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3)];
    let mut named = 0;
    for span in section.split('`').skip(1).step_by(2) {
        // Test names are sentences: snake case with several words (`inbox::record` is an API).
        let Some((file, test)) = span.split_once("::") else {
            continue;
        };
        let sentence = test.matches('_').count() >= 3
            && test
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !sentence {
            continue;
        }
        let path = if file.ends_with(".rs") {
            root().join(file)
        } else {
            root().join("tests/tests").join(format!("{file}.rs"))
        };
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("the README names {span}, but {}: {err}", path.display()));
        // A test: the function carries a test attribute (a doc comment may come between).
        let is_test = source.find(&format!("fn {test}(")).is_some_and(|at| {
            let before = &source[..at];
            let attribute = before.rfind("#[").map_or("", |start| &before[start..]);
            attribute.starts_with("#[test]") || attribute.starts_with("#[tokio::test")
        });
        assert!(
            is_test,
            "the README names {span}, but {} has no test `{test}`",
            path.display()
        );
        named += 1;
    }
    assert!(
        named >= 30,
        "expected the guarantees to name their tests, found {named}"
    );
}

// ---------------------------------------------------------------------------------------
// One way in: the dependencies to add and the relay binary
// ---------------------------------------------------------------------------------------

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// `cargo`, the one running this suite when it says so, in the checkout's root.
fn cargo() -> std::process::Command {
    let mut command =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}

fn run_cargo(args: &[&str]) -> Result<String> {
    let output = cargo().args(args).output()?;
    ensure!(
        output.status.success(),
        "cargo {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// The workspace's packages as `cargo metadata --no-deps` lists them (it resolves nothing and
/// downloads nothing).
fn workspace_packages() -> Result<Vec<serde_json::Value>> {
    let metadata: serde_json::Value = serde_json::from_str(&run_cargo(&[
        "metadata",
        "--no-deps",
        "--offline",
        "--format-version",
        "1",
    ])?)?;
    Ok(metadata["packages"]
        .as_array()
        .context("no packages")?
        .clone())
}

/// The workspace package whose manifest is `dir/Cargo.toml`.
fn package_in(dir: &Path) -> Result<serde_json::Value> {
    let manifest = dir
        .join("Cargo.toml")
        .canonicalize()
        .with_context(|| format!("{} has no Cargo.toml", dir.display()))?;
    workspace_packages()?
        .into_iter()
        .find(|package| {
            package["manifest_path"]
                .as_str()
                .and_then(|path| Path::new(path).canonicalize().ok())
                .is_some_and(|path| path == manifest)
        })
        .with_context(|| format!("{} is no package of the workspace", dir.display()))
}

/// Checks that the package in `dir` builds the binary `outbox-relay` from a source that exists;
/// returns the package's name.
fn relay_package_binary(dir: &Path) -> Result<String> {
    let package = package_in(dir)?;
    let binary = package["targets"]
        .as_array()
        .context("no targets")?
        .iter()
        .find(|target| {
            target["name"] == "outbox-relay"
                && target["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"))
        })
        .with_context(|| format!("{} builds no binary outbox-relay", dir.display()))?;
    let main = Path::new(binary["src_path"].as_str().context("no src_path")?);
    ensure!(
        main.exists(),
        "the binary's source {} is missing",
        main.display()
    );
    Ok(package["name"].as_str().context("no name")?.to_owned())
}

/// `cargo install --path <dir> --locked` of a guide, from the checkout's root: `<dir>` is a
/// package of the workspace that builds the binary `outbox-relay`, and `--locked` works: the
/// committed `Cargo.lock` is complete and current (`cargo tree --locked` resolves as the
/// install does, and fails where `--locked` would).
///
/// The install itself is not run. Measured on 2 cores, `cargo install --path outbox-relay
/// --locked --debug --offline --root <tmp>` took 1.6 s with the suite's debug build warm
/// (nothing recompiled: it builds in the workspace's `target/`), but it takes the build
/// directory's lock, which a running `cargo test` holds, and on a cold cache (or without
/// `--debug`, as users run it) it is a full build of the relay: minutes.
fn check_cargo_install(command: &str) -> Result<()> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let path = words
        .iter()
        .position(|w| *w == "--path")
        .and_then(|i| words.get(i + 1))
        .context("`cargo install` without --path: the crates are not on crates.io")?;
    ensure!(
        words.contains(&"--locked"),
        "`{command}`: without --locked the install picks versions anew, not Cargo.lock's"
    );
    let package = relay_package_binary(&root().join(path))?;
    run_cargo(&[
        "tree",
        "--locked",
        "--offline",
        "--edges",
        "normal",
        "--depth",
        "0",
        "-p",
        &package,
    ])
    .context("`cargo install --locked` would fail: Cargo.lock is not current")?;
    Ok(())
}

/// `docker build … <context>` of a guide, from the checkout's root: the Dockerfile exists, the
/// stage built (`--target`, else the last) runs `outbox-relay` as its entrypoint, and the
/// relay in it is built from `Cargo.lock` (`--locked`). Returns the image's tag. (No Docker
/// engine is needed; `deploy_manifests.rs` checks the Dockerfile's stages further.)
fn check_docker_build(command: &str) -> Result<String> {
    let words: Vec<&str> = command.split_whitespace().skip(2).collect();
    let (mut tag, mut file, mut target, mut context) = (None, None, None, None);
    let mut i = 0;
    while i < words.len() {
        let value = words.get(i + 1).copied();
        match words[i] {
            "-t" | "--tag" => (tag, i) = (value, i + 2),
            "-f" | "--file" => (file, i) = (value, i + 2),
            "--target" => (target, i) = (value, i + 2),
            option if option.starts_with('-') => {
                bail!("`{command}`: this test does not know the option {option}")
            }
            path => (context, i) = (Some(path), i + 1),
        }
    }
    let tag = tag.context("a `docker build` without -t: the guide cannot run the image by name")?;
    let context = root().join(context.context("a `docker build` without a context")?);
    let dockerfile_path = file.map_or_else(|| context.join("Dockerfile"), |f| root().join(f));
    let dockerfile = std::fs::read_to_string(&dockerfile_path)
        .with_context(|| format!("{}", dockerfile_path.display()))?;
    let mut stages: Vec<(String, String)> = Vec::new();
    for line in dockerfile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"FROM") {
            let name = words
                .iter()
                .position(|w| w.eq_ignore_ascii_case("as"))
                .and_then(|at| words.get(at + 1))
                .unwrap_or(&"");
            stages.push(((*name).to_owned(), String::new()));
        } else if let Some((_, text)) = stages.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    let (name, stage) = match target {
        Some(target) => stages.iter().find(|(name, _)| name == target),
        None => stages.last(),
    }
    .with_context(|| format!("`{command}`: no such stage"))?;
    ensure!(
        stage
            .lines()
            .any(|l| l.trim() == r#"ENTRYPOINT ["outbox-relay"]"#),
        "`{command}`: the stage {name} does not run outbox-relay"
    );
    ensure!(
        dockerfile.contains("--locked -p outbox-relay"),
        "`{command}`: the image's relay is not built from Cargo.lock"
    );
    Ok(tag.to_owned())
}

/// The relay's own command line in another way of running it: `cargo run -p outbox-relay --
/// <args>`, or `docker run [options] <image> <args>` of an image built before (`images`),
/// whose `-e NAME` variables must be in `env` (they pass the caller's). `None` for anything
/// else.
fn relay_command_of(
    command: &str,
    images: &BTreeSet<String>,
    env: &BTreeMap<String, String>,
) -> Option<Result<String>> {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["cargo", "run", "-p", "outbox-relay", "--", args @ ..] => {
            Some(Ok(format!("outbox-relay {}", args.join(" "))))
        }
        ["docker", "run", rest @ ..] => Some((|| {
            let mut i = 0;
            while let Some(word) = rest.get(i) {
                match *word {
                    "-e" | "--env" => {
                        let name = rest.get(i + 1).context("-e without a variable")?;
                        ensure!(
                            !name.contains('=') && env.contains_key(*name),
                            "-e {name}: the guide passes a variable the relay is not given here"
                        );
                        i += 2;
                    }
                    "--network" => i += 2,
                    "--rm" | "-it" | "-i" | "-t" => i += 1,
                    option if option.starts_with('-') => {
                        bail!("this test does not know the option {option}")
                    }
                    image => {
                        ensure!(
                            images.contains(image),
                            "the image {image} is not built by a `docker build -t` before it"
                        );
                        return Ok(format!("outbox-relay {}", rest[i + 1..].join(" ")));
                    }
                }
            }
            bail!("no image")
        })()),
        _ => None,
    }
}

/// The GitHub anchor of a Markdown heading: `## 2. Get the relay` → `2-get-the-relay`.
fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The getting-started guide's section on getting the relay: its anchor and its ```sh block.
fn get_the_relay_section() -> (String, String) {
    let text = guide("getting-started.md");
    let heading = text
        .lines()
        .find(|line| line.starts_with("## ") && line.contains("Get the relay"))
        .expect("getting-started.md has a section `Get the relay`");
    let section = text
        .split(heading)
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let block = code_blocks(section)
        .into_iter()
        .find(|(language, _)| language == "sh")
        .expect("a ```sh block in `Get the relay`")
        .1;
    (anchor(heading), block)
}

#[test]
fn the_readme_and_the_guides_say_how_to_get_the_relay_and_each_way_is_real() -> Result<()> {
    let (anchor, block) = get_the_relay_section();
    // The README gives the same commands.
    ensure!(
        code_blocks(&readme())
            .iter()
            .any(|(l, b)| l == "sh" && *b == block),
        "the README's commands to get the relay differ from getting-started.md's:\n{block}"
    );
    // Before the guide first runs it, and every other guide that runs it points there.
    let text = guide("getting-started.md");
    let first_use = text
        .find("\noutbox-relay ")
        .context("getting-started runs no outbox-relay")?;
    ensure!(text.find(&block).is_some_and(|at| at < first_use));
    for name in GUIDES.iter().filter(|name| **name != "getting-started.md") {
        let text = guide(name);
        if text.contains("outbox-relay") {
            ensure!(
                text.contains(&format!("(getting-started.md#{anchor})")),
                "{name} runs outbox-relay but does not link getting-started.md#{anchor}"
            );
        }
    }

    // The three ways, each checked as what it is (the shell test then runs `cargo run` and
    // `docker run`'s relay commands against a database).
    let commands = commands(&block);
    let (mut install, mut image, mut run) = (false, None, false);
    for command in &commands {
        if command.starts_with("cargo install") {
            check_cargo_install(command)?;
            install = true;
        } else if command.starts_with("docker build") {
            image = Some(check_docker_build(command)?);
        } else if command.starts_with("cargo run") {
            check_cargo_command(command)?;
            run = true;
        }
    }
    let image = image.context("no `docker build` of the image")?;
    ensure!(install && run, "not every way is given: {commands:?}");
    let images = BTreeSet::from([image]);
    let env = BTreeMap::from([("DATABASE_URL".to_owned(), String::new())]);
    for command in &commands {
        if let Some(relay) = relay_command_of(command, &images, &env) {
            let relay = relay?;
            let subcommand = relay.split_whitespace().nth(1).context("no subcommand")?;
            help_text(&[subcommand]);
        }
    }
    Ok(())
}

/// One dependency of a ```toml block: its name, whether it is commented out (for some
/// services only), the line.
#[derive(Debug, Clone)]
struct Dependency {
    name: String,
    optional: bool,
    line: String,
}

/// The ```toml blocks of `markdown` that list `[dependencies]`.
fn dependency_blocks(markdown: &str) -> Vec<String> {
    code_blocks(markdown)
        .into_iter()
        .filter(|(language, block)| language == "toml" && block.contains("[dependencies]"))
        .map(|(_, block)| block)
        .collect()
}

fn dependencies(block: &str) -> Vec<Dependency> {
    block
        .lines()
        .filter_map(|line| {
            let trimmed = line.trim();
            let (optional, body) = match trimmed.strip_prefix('#') {
                Some(rest) => (true, rest.trim()),
                None => (false, trimmed),
            };
            let (name, _) = body.split_once(" = ")?;
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            is_name.then(|| Dependency {
                name: name.to_owned(),
                optional,
                line: body.to_owned(),
            })
        })
        .collect()
}

/// The code of a ```rust block as a reader sees it: without rustdoc's hidden lines (`# …`),
/// comments and the contents of string literals.
fn visible_code(block: &str) -> String {
    let mut code = String::new();
    let mut in_string = false;
    for line in block.lines() {
        let trimmed = line.trim_start();
        if !in_string && (trimmed == "#" || trimmed.starts_with("# ")) {
            continue;
        }
        let mut escaped = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                    code.push('"');
                }
                continue;
            }
            match c {
                '"' => {
                    in_string = true;
                    code.push('"');
                }
                '/' if chars.peek() == Some(&'/') => break,
                c => code.push(c),
            }
        }
        code.push('\n');
    }
    code
}

/// What a block's code takes from crates: the first segment of every `use` path, every name
/// a `use` brings in, and the first segment of every other path that starts with a lower-case
/// name (`sqlx::query`; types and variants, `Uuid::now_v7`, start upper-case).
fn crate_names(code: &str) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let mut tokens: Vec<String> = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphabetic() || c == '_' {
            let mut word = c.to_string();
            while let Some(&next) = chars.peek() {
                if next.is_alphanumeric() || next == '_' {
                    word.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(word);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            tokens.push("::".to_owned());
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    let is_word = |t: &str| t.starts_with(|c: char| c.is_alphabetic() || c == '_');
    let (mut use_roots, mut imported, mut path_roots) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "use" {
            let end = tokens[i..]
                .iter()
                .position(|t| t == ";")
                .map_or(tokens.len(), |at| i + at);
            let statement = &tokens[i + 1..end];
            if let Some(root) = statement.iter().find(|t| *t != "::") {
                use_roots.insert(root.clone());
            }
            imported.extend(statement.iter().filter(|t| is_word(t)).cloned());
            i = end;
            continue;
        }
        let starts_path = tokens.get(i + 1).is_some_and(|t| t == "::")
            // Not a path's later segment, nor a method's turbofish (`.event::<T>()`).
            && (i == 0 || (tokens[i - 1] != "::" && tokens[i - 1] != "."))
            && tokens[i].starts_with(|c: char| c.is_lowercase() || c == '_');
        if starts_path {
            path_roots.insert(tokens[i].clone());
        }
        i += 1;
    }
    (use_roots, imported, path_roots)
}

/// What Rust code names without a dependency: the standard library, primitive types, paths
/// relative to the current crate.
const BUILT_IN: [&str; 22] = [
    "std", "core", "alloc", "crate", "self", "super", "Self", "i8", "i16", "i32", "i64", "i128",
    "isize", "u8", "u16", "u32", "u64", "u128", "usize", "f32", "f64", "str",
];

/// Checks that `markdown`'s Rust code names only the crates in `allowed` (dependency names,
/// `-` as `_`) and the built-in ones.
fn check_rust_crates(name: &str, markdown: &str, allowed: &BTreeSet<String>) -> Result<usize> {
    let mut blocks = 0;
    for (language, block) in code_blocks(markdown) {
        if !language.starts_with("rust") {
            continue;
        }
        blocks += 1;
        let (use_roots, imported, path_roots) = crate_names(&visible_code(&block));
        let known = |name: &String| allowed.contains(name) || BUILT_IN.contains(&name.as_str());
        for root in &use_roots {
            ensure!(
                known(root),
                "{name}: `use {root}::…`, but `{root}` is not among the dependencies it gives \
                 ({allowed:?}){}",
                if root == "sqlx" || root == "catalog_types" {
                    format!(": use `outbox_core::{root}`")
                } else {
                    String::new()
                }
            );
        }
        for root in &path_roots {
            ensure!(
                known(root) || imported.contains(root),
                "{name}: `{root}::…` names a crate that is not among the dependencies it gives \
                 ({allowed:?}) and no `use` brings it in"
            );
        }
    }
    Ok(blocks)
}

/// Dependency names as Rust code names them.
fn crate_names_of(dependencies: &[Dependency]) -> BTreeSet<String> {
    dependencies
        .iter()
        .filter(|d| !d.optional)
        .map(|d| d.name.replace('-', "_"))
        .collect()
}

#[test]
fn the_readme_and_every_guide_give_the_same_dependencies_and_their_code_uses_only_those()
-> Result<()> {
    let readme = readme();
    let readme_blocks = dependency_blocks(&readme);
    ensure!(
        readme_blocks.len() == 1,
        "the README gives {} dependency lists",
        readme_blocks.len()
    );
    let the_list = &readme_blocks[0];
    let listed = dependencies(the_list);
    let line_of = |name: &str, optional: bool| {
        listed
            .iter()
            .find(|d| d.name == name && d.optional == optional)
            .map(|d| d.line.clone())
    };
    let outbox_core = line_of("outbox-core", false).context("the README adds no outbox-core")?;
    let optional_sqlx = line_of("sqlx", true);
    // The getting-started guide adds the same list, word for word.
    let getting_started = dependency_blocks(&guide("getting-started.md"));
    ensure!(
        getting_started.len() == 1 && getting_started[0] == *the_list,
        "getting-started.md's dependencies differ from the README's:\n{getting_started:?}\nREADME:\n{the_list}"
    );

    // Nowhere another way in: catalog-types and sqlx come through outbox-core's re-exports.
    let service = crate_names_of(&listed);
    let catalog_crate: BTreeSet<String> =
        package_in(&root().join("catalog-types"))?["dependencies"]
            .as_array()
            .context("dependencies")?
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str().map(|n| n.replace('-', "_")))
            .chain(["catalog_types".to_owned()])
            .collect();
    let mut rust_blocks = check_rust_crates("README.md", &readme, &service)?;
    for name in GUIDES {
        let text = guide(name);
        let mut allowed = service.clone();
        for block in dependency_blocks(&text) {
            for dependency in dependencies(&block) {
                match (dependency.name.as_str(), dependency.optional) {
                    ("outbox-core", _) => ensure!(
                        dependency.line == outbox_core,
                        "{name}: `{}` differs from the README's `{outbox_core}`",
                        dependency.line
                    ),
                    ("catalog-types", _) => bail!(
                        "{name} adds catalog-types: use outbox-core's re-export, `outbox_core::catalog_types`"
                    ),
                    ("sqlx", false) => bail!(
                        "{name} adds sqlx: use outbox-core's re-export, `outbox_core::sqlx` (or the README's optional line)"
                    ),
                    ("sqlx", true) => ensure!(
                        Some(&dependency.line) == optional_sqlx.as_ref(),
                        "{name}: the optional sqlx line differs from the README's"
                    ),
                    _ => {}
                }
            }
            allowed.extend(crate_names_of(&dependencies(&block)));
        }
        // The event-types guide shows code of catalog-types itself besides a consumer's.
        if name == "event-types.md" {
            allowed.extend(catalog_crate.iter().cloned());
        }
        rust_blocks += check_rust_crates(name, &text, &allowed)?;
    }
    ensure!(rust_blocks >= 6, "only {rust_blocks} Rust blocks checked");
    Ok(())
}

/// `[[package]]` name → versions of `Cargo.lock`.
fn locked_versions() -> Result<BTreeMap<String, BTreeSet<String>>> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))?;
    let mut versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(value) = line.strip_prefix("name = ") {
            name = Some(value.trim_matches('"').to_owned());
        } else if let Some(value) = line.strip_prefix("version = ")
            && let Some(name) = name.take()
        {
            versions
                .entry(name)
                .or_default()
                .insert(value.trim_matches('"').to_owned());
        }
    }
    Ok(versions)
}

/// The README's dependency list (its optional lines too) and the consuming guide's, as the
/// `[dependencies]` of a new service beside the checkout, resolved offline by cargo with the
/// repository's `Cargo.lock` as a start: every line parses, every feature exists, the
/// paths are the repository's crates, one sqlx (the one outbox-core is built with) is in the
/// build, and every dependency resolves to the version this repository builds and tests with.
#[test]
fn the_readmes_dependencies_resolve_to_the_versions_this_repository_builds() -> Result<()> {
    let mut lines = Vec::new();
    let blocks = dependency_blocks(&readme())
        .into_iter()
        .chain(dependency_blocks(&guide("consuming.md")));
    for block in blocks {
        for dependency in dependencies(&block) {
            let mut line = dependency.line.clone();
            if let Some(start) = line.find("path = \"") {
                let value_start = start + "path = \"".len();
                let end = value_start + line[value_start..].find('"').context("unclosed path")?;
                let path = &line[value_start..end];
                // A service beside a checkout named `outbox`.
                let inside = path.strip_prefix("../outbox/").with_context(|| {
                    format!("`{line}`: a path beside the checkout, ../outbox/…")
                })?;
                let real = root().join(inside).canonicalize()?;
                package_in(&real)?;
                line = format!("{}{}{}", &line[..value_start], real.display(), &line[end..]);
            }
            lines.push(line);
        }
    }
    let dir = std::env::temp_dir().join(format!(
        "outbox-guides-service-{}",
        integration_tests::unique_suffix()
    ));
    std::fs::create_dir_all(dir.join("src"))?;
    let outcome = (|| -> Result<()> {
        std::fs::write(dir.join("src/lib.rs"), "")?;
        std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock"))?;
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"a-service\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
                 publish = false\n\n[workspace]\n\n[dependencies]\n{}\n",
                lines.join("\n")
            ),
        )?;
        let manifest = dir.join("Cargo.toml");
        let manifest = manifest.to_str().context("temp path")?;
        let tree = |depth: &str| {
            run_cargo(&[
                "tree",
                "--offline",
                "--manifest-path",
                manifest,
                "--edges",
                "normal",
                "--prefix",
                "none",
                "--format",
                "{p}",
                "--depth",
                depth,
            ])
        };
        let parse = |text: &str| -> Vec<(String, String)> {
            text.lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace();
                    let name = words.next()?.to_owned();
                    let version = words.next()?.trim_start_matches('v').to_owned();
                    Some((name, version))
                })
                .collect()
        };
        let locked = locked_versions()?;
        let everything = parse(&tree("100")?);
        for crate_name in ["sqlx", "sqlx-core", "catalog-types", "outbox-core"] {
            let versions: BTreeSet<&String> = everything
                .iter()
                .filter(|(name, _)| name == crate_name)
                .map(|(_, version)| version)
                .collect();
            ensure!(
                versions.len() == 1 && locked[crate_name].contains(*versions.first().unwrap()),
                "{crate_name}: {versions:?} in a service's build, {:?} in this repository's",
                locked.get(crate_name)
            );
        }
        for (name, version) in parse(&tree("1")?).into_iter().skip(1) {
            ensure!(
                locked.get(&name).is_some_and(|v| v.contains(&version)),
                "{name} {version}: not the version this repository builds ({:?})",
                locked.get(&name)
            );
        }
        Ok(())
    })();
    let removed = std::fs::remove_dir_all(&dir);
    outcome.and(removed.map_err(Into::into))
}
