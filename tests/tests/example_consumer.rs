//! The example consumer (`examples/src/bin/consumer.rs`) as a user meets it, the built
//! binary against the real servers: `--help` works; without being told where to work it
//! refuses before connecting anywhere and creates nothing (no exchange, queue or table);
//! told part of it, it still creates nothing; bad settings are named with passwords masked;
//! `setup` says what it created, `run` applies each event once, `teardown` removes what it is
//! asked to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use integration_tests::{
    RelayProcess, TestBroker, TestDb, amqp_url, database_url, emit_tickets, log_path, relay_binary,
    unique_suffix, wait_until_settled, with_db_and_broker,
};
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use sqlx::PgPool;

fn consumer_binary() -> Result<PathBuf> {
    let path = relay_binary()?.with_file_name("consumer");
    ensure!(
        path.exists(),
        "{} is missing: run `cargo build -p outbox-examples` first",
        path.display()
    );
    Ok(path)
}

/// Runs `consumer <args>` with only `env` (and `PATH`: none of the settings' variables of
/// the test's own environment counts): (exit code, stdout, stderr).
async fn consumer(args: &[&str], env: &[(&str, &str)]) -> Result<(i32, String, String)> {
    let mut command = tokio::process::Command::new(consumer_binary()?);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .with_context(|| format!("consumer {args:?} did not finish"))??;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// The tables of a database, `schema.table`.
async fn tables(pool: &PgPool) -> Result<BTreeSet<String>> {
    Ok(sqlx::query_scalar(
        "SELECT schemaname || '.' || tablename FROM pg_tables
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect())
}

#[derive(Clone, Copy)]
enum Object {
    Exchange,
    Queue,
}

/// Whether the exchange or queue `name` exists on the test broker (a passive declare).
async fn exists(object: Object, name: &str) -> Result<bool> {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let outcome = match object {
        Object::Exchange => {
            let passive = ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            };
            channel
                .exchange_declare(
                    name.into(),
                    ExchangeKind::Topic,
                    passive,
                    FieldTable::default(),
                )
                .await
        }
        Object::Queue => {
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(name.into(), passive, FieldTable::default())
                .await
                .map(|_| ())
        }
    };
    let _ = connection.close(200, "done".into()).await;
    match outcome {
        Ok(()) => Ok(true),
        Err(error) => match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404 => Ok(false),
            _ => Err(error.into()),
        },
    }
}

/// Every exchange and queue of the broker's `/` vhost, from `rabbitmqctl` (`None` where it
/// cannot be run, e.g. a remote broker), leaving out the names other tests running at the
/// same time create (`outbox.test.*`, server-named `amq.gen-*`).
async fn broker_objects() -> Option<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for (object, command) in [("exchange", "list_exchanges"), ("queue", "list_queues")] {
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new("rabbitmqctl")
                .args(["-q", command, "--no-table-headers", "name"])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .ok()?
        .ok()?;
        if !output.status.success() {
            return None;
        }
        for name in String::from_utf8_lossy(&output.stdout).lines() {
            let name = name.trim();
            if name.is_empty() || name.starts_with("outbox.test.") || name.starts_with("amq.gen-") {
                continue;
            }
            names.insert(format!("{object} {name}"));
        }
    }
    Some(names)
}

#[tokio::test]
async fn consumer_help_shows_its_commands_flags_and_variables() -> Result<()> {
    let (code, stdout, stderr) = consumer(&["--help"], &[]).await?;
    ensure!(code == 0, "consumer --help exited {code}: {stderr}");
    for command in ["setup", "run", "teardown"] {
        ensure!(
            stdout.lines().any(|l| l.trim_start().starts_with(command)),
            "`consumer --help` lists no {command}:\n{stdout}"
        );
    }
    ensure!(
        stdout.contains("creates only what it is told to"),
        "{stdout}"
    );

    // A password in the environment never shows in the help.
    let secret_env = [
        ("DATABASE_URL", "postgres://app:hunter2secret@db:5432/app"),
        ("AMQP_URL", "amqp://app:hunter2secret@mq:5672/%2f"),
    ];
    let pages: [(&str, &[&str]); 3] = [
        (
            "run",
            &[
                "--database-url",
                "--amqp-url",
                "--queue",
                "--setup",
                "--expect",
                "--idle",
                "--ledger",
                "--no-inbox",
                "[env: DATABASE_URL]",
                "[env: AMQP_URL]",
                "[env: CONSUMER_QUEUE]",
                "[env: OUTBOX_EXCHANGE]",
            ],
        ),
        (
            "setup",
            &[
                "--exchange",
                "--binding",
                "--queue-type",
                "--reset",
                "[env: OUTBOX_EXCHANGE]",
            ],
        ),
        ("teardown", &["--delete-exchange", "--drop-tables"]),
    ];
    for (command, wanted) in pages {
        let (code, stdout, stderr) = consumer(&[command, "--help"], &secret_env).await?;
        ensure!(
            code == 0,
            "consumer {command} --help exited {code}: {stderr}"
        );
        for text in wanted {
            ensure!(
                stdout.contains(text),
                "`consumer {command} --help` lacks {text}:\n{stdout}"
            );
        }
        ensure!(
            !stdout.contains("hunter2secret"),
            "`consumer {command} --help` shows a password:\n{stdout}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn without_its_settings_the_consumer_refuses_and_creates_nothing() -> Result<()> {
    let default_db = PgPool::connect(&database_url()).await?;
    let tables_before = tables(&default_db).await?;
    let broker_before = broker_objects().await;
    // What the consumer created by itself before it had a command line.
    let old_queue = "outbox.events.demo-projection";
    let old_queue_before = exists(Object::Queue, old_queue).await?;

    let (code, _, stderr) = consumer(&[], &[]).await?;
    ensure!(
        code == 2,
        "consumer without a command exited {code}: {stderr}"
    );
    ensure!(stderr.contains("Usage: consumer"), "{stderr}");

    for (command, missing) in [
        ("run", &["--database-url", "--amqp-url", "--queue"][..]),
        (
            "setup",
            &["--database-url", "--amqp-url", "--queue", "--exchange"][..],
        ),
        ("teardown", &["--amqp-url", "--queue"][..]),
    ] {
        let (code, stdout, stderr) = consumer(&[command], &[]).await?;
        ensure!(
            code == 2,
            "`consumer {command}` without settings exited {code}:\n{stdout}\n{stderr}"
        );
        ensure!(stdout.is_empty(), "{stdout}");
        for flag in missing {
            ensure!(
                stderr.contains(flag),
                "`consumer {command}`: the error does not name {flag}:\n{stderr}"
            );
        }
        ensure!(
            stderr.contains("has no defaults")
                && stderr.contains("CONSUMER_QUEUE")
                && stderr.contains("Nothing was connected to or created"),
            "{stderr}"
        );
    }

    ensure!(
        tables(&default_db).await? == tables_before,
        "a table appeared in the default database"
    );
    ensure!(exists(Object::Queue, old_queue).await? == old_queue_before);
    match (broker_before, broker_objects().await) {
        (Some(before), Some(after)) => {
            let new: Vec<&String> = after.difference(&before).collect();
            ensure!(new.is_empty(), "new on the broker: {new:?}");
        }
        _ => eprintln!("rabbitmqctl cannot list the broker here: checked by name only"),
    }
    default_db.close().await;
    Ok(())
}

#[tokio::test]
async fn told_part_of_where_to_work_the_consumer_creates_nothing() -> Result<()> {
    let db = TestDb::new().await?;
    let outcome = async {
        let exchange = format!("outbox.test.{}", unique_suffix());
        let queue = format!("{exchange}.consumer");
        let (db_url, amqp) = (db.url(), amqp_url());
        let tables_before = tables(&db.pool).await?;

        // No queue: refused by the command line.
        let env = [
            ("DATABASE_URL", db_url.as_str()),
            ("AMQP_URL", amqp.as_str()),
            ("OUTBOX_EXCHANGE", exchange.as_str()),
        ];
        let (code, _, stderr) = consumer(&["run"], &env).await?;
        ensure!(code == 2 && stderr.contains("--queue"), "{code}: {stderr}");

        // A queue that does not exist: refused, not declared.
        let env = [
            ("DATABASE_URL", db_url.as_str()),
            ("AMQP_URL", amqp.as_str()),
            ("OUTBOX_EXCHANGE", exchange.as_str()),
            ("CONSUMER_QUEUE", queue.as_str()),
        ];
        let (code, _, stderr) = consumer(&["run", "--expect", "1"], &env).await?;
        ensure!(code == 1, "run on a missing queue exited {code}: {stderr}");
        ensure!(
            stderr.contains(&format!("queue {queue:?} does not exist"))
                && stderr.contains("consumer setup"),
            "{stderr}"
        );
        // Teardown of what does not exist deletes nothing and creates nothing.
        let (code, stdout, stderr) =
            consumer(&["teardown", "--delete-exchange", &exchange], &env).await?;
        ensure!(code == 0, "{code}: {stderr}");
        ensure!(
            stdout.contains("does not exist: nothing to delete"),
            "{stdout}"
        );
        ensure!(!exists(Object::Exchange, &exchange).await?);
        ensure!(!exists(Object::Queue, &queue).await?);
        ensure!(!exists(Object::Queue, &format!("{exchange}.demo-projection")).await?);

        // A queue that exists, but not the projection table: refused, not created.
        let broker = TestBroker::new(&["#"]).await?;
        let env = [
            ("DATABASE_URL", db_url.as_str()),
            ("AMQP_URL", amqp.as_str()),
            ("CONSUMER_QUEUE", broker.queue.as_str()),
        ];
        let (code, _, stderr) = consumer(&["run", "--expect", "1"], &env).await?;
        broker.cleanup().await?;
        ensure!(code == 1, "run without its table exited {code}: {stderr}");
        ensure!(
            stderr.contains("table demo_projection does not exist")
                && stderr.contains("consumer setup"),
            "{stderr}"
        );
        ensure!(
            tables(&db.pool).await? == tables_before,
            "the consumer created a table it was not told to"
        );
        Ok(())
    }
    .await;
    let cleaned = db.cleanup().await;
    outcome.and(cleaned)
}

#[tokio::test]
async fn bad_settings_are_named_with_passwords_masked() -> Result<()> {
    let secret = "s3cr3tpw";
    let broker = url::Url::parse(&amqp_url())?;
    let broker_host = format!(
        "{}:{}",
        broker.host_str().unwrap_or("127.0.0.1"),
        broker.port().unwrap_or(5672)
    );
    let wrong_password = format!("amqp://guest:{secret}@{broker_host}/%2f");
    let closed_port = format!("amqp://guest:{secret}@127.0.0.1:1/%2f");
    let no_database = format!("postgres://app:{secret}@127.0.0.1:1/app");
    let amqp = amqp_url();
    let cases: Vec<(Vec<&str>, i32, Vec<String>)> = vec![
        (
            vec!["--amqp-url", "http://guest:s3cr3tpw@mq/"],
            1,
            vec!["--amqp-url http://guest:***@mq/: expected an amqp:// or amqps:// URL".into()],
        ),
        (
            vec!["--database-url", "mysql://app:s3cr3tpw@db/app"],
            1,
            vec!["--database-url mysql://app:***@db/app: expected a postgres://".into()],
        ),
        (
            vec!["--amqp-url", &closed_port],
            1,
            vec![
                "cannot connect to the broker amqp://guest:***@127.0.0.1:1/%2f".into(),
                "refused".into(),
            ],
        ),
        (
            vec!["--amqp-url", &wrong_password],
            1,
            vec![format!(
                "cannot connect to the broker amqp://guest:***@{broker_host}/%2f"
            )],
        ),
        (
            vec!["--amqp-url", &amqp, "--database-url", &no_database],
            1,
            vec![
                "cannot use the database postgres://app:***@127.0.0.1:1/app".into(),
                "connection refused".into(),
            ],
        ),
        (
            vec!["--expect", "many"],
            2,
            vec!["invalid value 'many' for '--expect <N>'".into()],
        ),
    ];
    for (flags, expected_code, wanted) in cases {
        let mut args = vec!["run", "--queue", "outbox.test.never-created"];
        args.extend(&flags);
        let env = [
            ("DATABASE_URL", "postgres://app:s3cr3tpw@127.0.0.1:1/app"),
            ("AMQP_URL", "amqp://guest:s3cr3tpw@127.0.0.1:1/%2f"),
        ];
        let (code, stdout, stderr) = consumer(&args, &env).await?;
        ensure!(
            code == expected_code,
            "{flags:?}: exited {code}, not {expected_code}:\n{stderr}"
        );
        for text in &wanted {
            ensure!(
                stderr.contains(text.as_str()),
                "{flags:?}: no `{text}` in:\n{stderr}"
            );
        }
        ensure!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{flags:?}: the password shows:\n{stdout}{stderr}"
        );
        ensure!(
            stderr.lines().count() <= 8 && !stderr.contains("reply_code"),
            "{flags:?}: not a short message:\n{stderr}"
        );
    }
    ensure!(!exists(Object::Queue, "outbox.test.never-created").await?);
    Ok(())
}

#[tokio::test]
async fn setup_run_and_teardown_do_what_they_say() -> Result<()> {
    with_db_and_broker(&["#"], async |db: &TestDb, broker: &TestBroker| {
        let queue = format!("{}.consumer", broker.exchange);
        let (db_url, amqp) = (db.url(), amqp_url());
        let env = [
            ("DATABASE_URL", db_url.as_str()),
            ("AMQP_URL", amqp.as_str()),
            ("OUTBOX_EXCHANGE", broker.exchange.as_str()),
            ("CONSUMER_QUEUE", queue.as_str()),
        ];

        let (code, stdout, stderr) = consumer(&["setup", "--binding", "tickets.*"], &env).await?;
        ensure!(code == 0, "setup exited {code}: {stderr}");
        for line in [
            format!("exchange {} exists", broker.exchange),
            format!("created queue {queue} (durable)"),
            format!(
                "bound queue {queue} to exchange {} with tickets.*",
                broker.exchange
            ),
            "created table demo_projection".to_owned(),
        ] {
            ensure!(
                stdout.contains(&line),
                "setup does not say `{line}`:\n{stdout}"
            );
        }
        ensure!(exists(Object::Queue, &queue).await?);
        // Idempotent, and it says nothing was created.
        let (code, stdout, stderr) = consumer(&["setup", "--binding", "tickets.*"], &env).await?;
        ensure!(code == 0, "setup again exited {code}: {stderr}");
        ensure!(
            !stdout.contains("created") && stdout.contains(&format!("queue {queue} exists")),
            "{stdout}"
        );

        let log = log_path("example-consumer-relay");
        let mut relay = RelayProcess::start(db, broker, &[], &log)?;
        let ids = emit_tickets(&db.pool, 3, 1).await?;
        wait_until_settled(&db.pool, &ids, Duration::from_secs(60)).await?;
        relay.signal("TERM").await?;
        relay.child.wait().await?;
        // Messages wait in the queue: teardown keeps it (without --force) and says why.
        let (code, _, stderr) = consumer(&["teardown"], &env).await?;
        ensure!(
            code == 1,
            "teardown of a queue holding messages exited {code}"
        );
        ensure!(stderr.contains("was kept"), "{stderr}");
        ensure!(exists(Object::Queue, &queue).await?);
        let (code, stdout, stderr) =
            consumer(&["run", "--expect", "3", "--idle", "20"], &env).await?;
        ensure!(code == 0, "run exited {code}: {stderr}");
        ensure!(
            stdout.contains("consumer demo-projection: 3 applied, 0 duplicates skipped"),
            "{stdout}"
        );
        let applied: i64 = sqlx::query_scalar(
            "SELECT applied FROM demo_projection WHERE event_type = 'TICKET_UPDATED'",
        )
        .fetch_one(&db.pool)
        .await?;
        ensure!(applied == 3, "{applied} applied");

        // The exchange still has the test's own queue bound: kept, and the exit says so.
        let (code, stdout, stderr) = consumer(
            &[
                "teardown",
                "--delete-exchange",
                &broker.exchange,
                "--drop-tables",
            ],
            &env,
        )
        .await?;
        ensure!(code == 1, "teardown exited {code}: {stdout}{stderr}");
        for line in [
            format!("deleted queue {queue}"),
            format!(
                "kept exchange {}: other queues are bound to it",
                broker.exchange
            ),
            "dropped table demo_projection".to_owned(),
        ] {
            ensure!(
                stdout.contains(&line),
                "teardown does not say `{line}`:\n{stdout}"
            );
        }
        ensure!(stderr.contains("still in use"), "{stderr}");
        ensure!(!exists(Object::Queue, &queue).await?);
        ensure!(exists(Object::Exchange, &broker.exchange).await?);
        ensure!(!tables(&db.pool).await?.contains("public.demo_projection"));
        Ok(())
    })
    .await
}
