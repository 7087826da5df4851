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
        // Cargo's own flags (`cargo test -p … --test …`) are not the relay's.
        let text: String = guide(name)
            .lines()
            .filter(|line| !line.contains("cargo "))
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
        for name in GUIDES {
            for (language, block) in code_blocks(&guide(name)) {
                if language != "sh" {
                    continue;
                }
                for command in commands(&block) {
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
