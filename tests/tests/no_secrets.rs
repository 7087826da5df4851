//! No password anywhere: the relay and every subcommand, at `trace` level, with passwords in
//! both URLs (as flags and as environment), through working runs and failing ones (wrong
//! broker password, database down, malformed URLs), never print either password.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use integration_tests::{
    TestBroker, TestDb, count_status, emit_tickets, free_local_addr, relay_binary, run_command,
    unique_suffix, wait_until, with_db_and_broker,
};

/// The two secrets and the URLs that carry them.
struct Secrets {
    db_password: String,
    amqp_user: String,
    amqp_password: String,
}

impl Secrets {
    fn new() -> Secrets {
        let suffix = unique_suffix();
        Secrets {
            db_password: format!("PgPw{suffix}"),
            amqp_user: format!("outbox_t_{suffix}"),
            amqp_password: format!("MqPw{suffix}"),
        }
    }

    /// The test database's URL with a password (trust authentication ignores it).
    fn database_url(&self, db: &TestDb) -> String {
        let mut url = url::Url::parse(&db.url()).unwrap();
        url.set_password(Some(&self.db_password)).unwrap();
        url.to_string()
    }

    fn amqp_url(&self, password: &str) -> String {
        let mut url = url::Url::parse(&integration_tests::amqp_url()).unwrap();
        url.set_username(&self.amqp_user).unwrap();
        url.set_password(Some(password)).unwrap();
        url.to_string()
    }

    /// Fails when `output` holds either password, as text or as a debug-printed byte list
    /// (how a logged frame would show it).
    fn assert_absent(&self, what: &str, output: &str) {
        let as_bytes = |text: &str| {
            text.bytes()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (db_bytes, amqp_bytes) = (as_bytes(&self.db_password), as_bytes(&self.amqp_password));
        for secret in [
            &self.db_password,
            &self.amqp_password,
            &db_bytes,
            &amqp_bytes,
        ] {
            assert!(
                !output.contains(secret.as_str()),
                "{what} printed a secret:\n{output}"
            );
        }
    }
}

/// Runs the relay binary with `args` and `env` at `trace` level; stops it with SIGTERM after
/// `limit` (or when `until` reports done); returns stdout and stderr together.
async fn traced(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Result<String> {
    let mut command = tokio::process::Command::new(relay_binary()?);
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.spawn()?;
    let pid = child.id().context("no pid")?;
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(limit).await;
        let _ = integration_tests::send_signal(pid, "TERM").await;
    });
    let output = tokio::time::timeout(limit + Duration::from_secs(60), child.wait_with_output())
        .await
        .context("the relay did not stop")??;
    stopper.abort();
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

#[tokio::test]
async fn no_password_is_printed_at_trace_level_by_any_command() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let secrets = Secrets::new();
        run_command(
            "rabbitmqctl",
            &["add_user", &secrets.amqp_user, &secrets.amqp_password],
        )
        .await?;
        let outcome = async {
            run_command(
                "rabbitmqctl",
                &[
                    "set_permissions",
                    "-p",
                    "/",
                    &secrets.amqp_user,
                    ".*",
                    ".*",
                    ".*",
                ],
            )
            .await?;
            every_command(db, broker, &secrets).await
        }
        .await;
        let deleted = run_command("rabbitmqctl", &["delete_user", &secrets.amqp_user]).await;
        outcome?;
        deleted
    })
    .await
}

async fn every_command(db: &TestDb, broker: &TestBroker, secrets: &Secrets) -> Result<()> {
    let database_url = secrets.database_url(db);
    let amqp_url = secrets.amqp_url(&secrets.amqp_password);
    let wrong_amqp_url = secrets.amqp_url(&format!("{}x", secrets.amqp_password));
    let ids = emit_tickets(&db.pool, 20, 5).await?;
    let id = ids[0].to_string();
    let http = free_local_addr()?.to_string();
    let run = |amqp: &str| {
        vec![
            "run".to_owned(),
            "--amqp-url".to_owned(),
            amqp.to_owned(),
            "--exchange".to_owned(),
            broker.exchange.clone(),
            "--http-addr".to_owned(),
            http.clone(),
            "--poll-interval".to_owned(),
            "100ms".to_owned(),
        ]
    };

    // A working relay, URLs in flags: delivers, then stops on SIGTERM.
    let pool = db.pool.clone();
    let mut args = run(&amqp_url);
    args.extend(["--database-url".to_owned(), database_url.clone()]);
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let relay = traced(&args_ref, &[], Duration::from_secs(6));
    let delivered = wait_until(Duration::from_secs(30), "events delivered", || {
        let pool = pool.clone();
        async move { Ok(count_status(&pool, "delivered").await? == 20) }
    });
    let (output, delivered) = tokio::join!(relay, delivered);
    delivered?;
    let output = output?;
    // The verbose level reached the clients (the AMQP client's frame dumps at `trace` are
    // the one thing the relay never writes).
    assert!(
        output.contains("DEBUG lapin") && output.contains("sqlx"),
        "the relay did not log verbosely:\n{output}"
    );
    secrets.assert_absent("run", &output);

    // Failing relays, URLs in the environment: the broker refuses the password; the database
    // is down (a closed port).
    let closed = format!(
        "postgres://postgres:{}@127.0.0.1:1/none",
        secrets.db_password
    );
    for (what, amqp, database) in [
        (
            "run with a wrong broker password",
            &wrong_amqp_url,
            &database_url,
        ),
        ("run with the database down", &amqp_url, &closed),
    ] {
        let args = run(amqp);
        let args_ref: Vec<&str> = args[..1]
            .iter()
            .chain(&args[3..])
            .map(String::as_str)
            .collect();
        let output = traced(
            &args_ref,
            &[("DATABASE_URL", database), ("AMQP_URL", amqp)],
            Duration::from_secs(4),
        )
        .await?;
        secrets.assert_absent(what, &output);
    }

    // Every operator command, working and failing.
    let with_db = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(["--database-url".to_owned(), database_url.clone()]);
        all
    };
    let commands: Vec<Vec<String>> = vec![
        with_db(&["migrate"]),
        with_db(&["status"]),
        with_db(&["status", "--format", "json"]),
        with_db(&["inspect", &id]),
        with_db(&["replay", "--status", "delivered", "--id", &id]),
        with_db(&["discard", "--all", "--dry-run"]),
        with_db(&["purge", "--dry-run"]),
        with_db(&["purge", "--inbox"]),
        with_db(&["wakeup"]),
        vec!["catalog".into(), "list".into()],
        vec!["status".into(), "--database-url".into(), closed.clone()],
        vec![
            "status".into(),
            "--database-url".into(),
            format!(
                "postgres://postgres:{}@127.0.0.1:99999/x",
                secrets.db_password
            ),
        ],
        vec![
            "status".into(),
            "--database-url".into(),
            format!("mysql://postgres:{}@127.0.0.1/x", secrets.db_password),
        ],
        vec![
            "run".into(),
            "--database-url".into(),
            database_url.clone(),
            "--amqp-url".into(),
            format!("http://guest:{}@127.0.0.1", secrets.amqp_password),
        ],
        vec![
            "run".into(),
            "--amqp-url".into(),
            amqp_url.clone(),
            "--database-url".into(),
            database_url.clone(),
            "--lease".into(),
            "1s".into(),
        ],
    ];
    for command in &commands {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let output = traced(&args, &[], Duration::from_secs(20)).await?;
        secrets.assert_absent(&format!("{:?}", &args[..2.min(args.len())]), &output);
    }
    Ok(())
}
