//! Every way a broker refuses the relay, told apart and said plainly, against the real
//! RabbitMQ: a vhost that does not exist, an exchange of another type, a user without
//! permission on the exchange, a wrong password. At start each ends `run` non-zero within
//! seconds with one line naming the broker (password masked), the cause and what to do;
//! after start `/readyz` names the cause, and the log says it once per change. No output
//! line ever holds the AMQP client's frame dumps.
//!
//! Each test works with a vhost, a user and an exchange of its own (`outbox_t_<random>`,
//! made with `rabbitmqctl`), removed at the end.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use integration_tests::proxy::Proxy;
use integration_tests::{
    RelayProcess, TestDb, amqp_url, emit_ticket, event_state, free_local_addr, log_path,
    relay_binary, run_command, unique_suffix, wait_until, with_db_and_broker,
};
use lapin::options::{ExchangeDeclareOptions, ExchangeDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};

/// `work` (a step of the test on the broker), failing after 30 s instead of hanging.
async fn within<T>(what: &str, work: impl Future<Output = lapin::Result<T>>) -> Result<T> {
    Ok(tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .with_context(|| format!("{what}: no answer from the broker within 30 s"))??)
}

/// A connection and a channel of the test's own on the broker.
async fn test_channel() -> Result<(Connection, lapin::Channel)> {
    let connection = within(
        "connecting",
        Connection::connect(&amqp_url(), ConnectionProperties::default()),
    )
    .await?;
    let channel = within("opening a channel", connection.create_channel()).await?;
    Ok((connection, channel))
}

/// What the AMQP client's frame dumps look like (`Close { reply_code: 530, reply_text:
/// ShortString("…"), … }`): none may reach the output.
fn assert_no_frames(output: &str) {
    for line in output.lines() {
        for dump in ["reply_code", "ShortString", "Close {", "AMQPError"] {
            assert!(!line.contains(dump), "a frame dump in the output: {line}");
        }
    }
}

/// A user of the test's own on the broker (and, optionally, a vhost of its own), made with
/// `rabbitmqctl` and removed by [`BrokerUser::remove`], or when dropped (a failed test).
struct BrokerUser {
    name: String,
    password: String,
    vhost: Option<String>,
    removed: bool,
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let ctl = |args: &[&str]| {
            let _ = std::process::Command::new("rabbitmqctl")
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        if let Some(vhost) = &self.vhost {
            ctl(&["delete_vhost", vhost]);
        }
        ctl(&["delete_user", &self.name]);
    }
}

impl BrokerUser {
    /// A user with `permissions` (configure, write, read) on vhost `/`.
    async fn on_default_vhost(permissions: [&str; 3]) -> Result<BrokerUser> {
        let user = BrokerUser::named(None);
        user.add().await?;
        user.permit("/", permissions).await?;
        Ok(user)
    }

    /// A user with every permission on a vhost of its own.
    async fn with_own_vhost() -> Result<BrokerUser> {
        let user = BrokerUser::named(Some(format!("outbox_t_{}", unique_suffix())));
        user.add().await?;
        user.add_vhost().await?;
        Ok(user)
    }

    fn named(vhost: Option<String>) -> BrokerUser {
        let suffix = unique_suffix();
        BrokerUser {
            name: format!("outbox_t_{suffix}"),
            password: format!("MqPw{suffix}"),
            vhost,
            removed: false,
        }
    }

    async fn add(&self) -> Result<()> {
        run_command("rabbitmqctl", &["add_user", &self.name, &self.password]).await
    }

    /// (Re)creates the user's own vhost and lets the user do anything on it.
    async fn add_vhost(&self) -> Result<()> {
        let vhost = self.vhost.as_deref().context("no vhost of its own")?;
        run_command("rabbitmqctl", &["add_vhost", vhost]).await?;
        self.permit(vhost, [".*", ".*", ".*"]).await
    }

    async fn delete_vhost(&self) -> Result<()> {
        let vhost = self.vhost.as_deref().context("no vhost of its own")?;
        run_command("rabbitmqctl", &["delete_vhost", vhost]).await
    }

    async fn permit(&self, vhost: &str, [configure, write, read]: [&str; 3]) -> Result<()> {
        run_command(
            "rabbitmqctl",
            &[
                "set_permissions",
                "-p",
                vhost,
                &self.name,
                configure,
                write,
                read,
            ],
        )
        .await
    }

    /// The broker's URL for this user (`password`), on its own vhost if it has one.
    fn url(&self, password: &str) -> String {
        let mut url = url::Url::parse(&amqp_url()).unwrap();
        url.set_username(&self.name).unwrap();
        url.set_password(Some(password)).unwrap();
        if let Some(vhost) = &self.vhost {
            url.set_path(&format!("/{vhost}"));
        }
        url.to_string()
    }

    async fn remove(mut self) -> Result<()> {
        self.removed = true;
        if self.vhost.is_some() {
            let _ = self.delete_vhost().await;
        }
        run_command("rabbitmqctl", &["delete_user", &self.name]).await
    }
}

/// Runs `outbox-relay run` against `db` and `amqp`, publishing to `exchange`, at `RUST_LOG`
/// `rust_log`, until it exits (at most 30 s); returns its exit code, its output and how long
/// it ran.
async fn run_until_exit(
    db: &TestDb,
    amqp: &str,
    exchange: &str,
    rust_log: &str,
) -> Result<(i32, String, Duration)> {
    let http = free_local_addr()?.to_string();
    let started = Instant::now();
    let mut command = tokio::process::Command::new(relay_binary()?);
    command
        .args(["run", "--database-url", &db.url(), "--amqp-url", amqp])
        .args(["--exchange", exchange, "--http-addr", &http])
        .env("RUST_LOG", rust_log)
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .context("the relay kept running: it retried a refusal that cannot heal")??;
    Ok((
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        started.elapsed(),
    ))
}

/// What every refusal at start must be: exit 1 within 10 s, the cause said once on a line
/// that names the broker (masked) and says what to do, no frame dump, no password.
fn assert_refused_at_start(
    (code, output, took): &(i32, String, Duration),
    node: &str,
    cause: &str,
    remedy: &str,
    password: &str,
) {
    println!("exit {code} after {took:?}:\n{output}");
    assert_eq!(*code, 1, "{output}");
    assert!(*took < Duration::from_secs(10), "took {took:?}: {output}");
    let lines: Vec<&str> = output.lines().filter(|l| l.contains(cause)).collect();
    assert_eq!(lines.len(), 1, "the cause once, on one line: {output}");
    let line = lines[0];
    assert!(
        line.starts_with("error: cannot start: broker ")
            && line.contains(node)
            && line.contains(remedy),
        "the line names the broker, the cause and what to do: {line}"
    );
    assert!(!output.contains(password), "the password printed: {output}");
    assert_no_frames(output);
}

/// The broker's URL as the relay prints it: user, masked password, host and port.
fn masked_node(user: &str) -> String {
    let url = url::Url::parse(&amqp_url()).unwrap();
    format!(
        "amqp://{user}:***@{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5672)
    )
}

#[tokio::test]
async fn a_vhost_that_does_not_exist_ends_the_relay_at_start() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let vhost = format!("outbox_t_{}", unique_suffix());
        let mut url = url::Url::parse(&amqp_url())?;
        url.set_path(&format!("/{vhost}"));
        // At `trace`, where the AMQP client would print every frame it exchanges.
        let ran = run_until_exit(db, url.as_str(), &broker.exchange, "trace").await?;
        let password = url.password().unwrap_or("guest").to_owned();
        assert_refused_at_start(
            &ran,
            &masked_node(url.username()),
            &format!("vhost \"{vhost}\" does not exist"),
            &format!("rabbitmqctl add_vhost {vhost}"),
            &format!(":{password}@"),
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn tls_to_a_plain_amqp_port_ends_the_relay_at_start() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let mut url = url::Url::parse(&amqp_url())?;
        url.set_scheme("amqps")
            .map_err(|()| anyhow::anyhow!("cannot make an amqps:// URL"))?;
        let port = url.port().unwrap_or(5672);
        let ran = run_until_exit(db, url.as_str(), &broker.exchange, "trace").await?;
        let password = url.password().unwrap_or("guest").to_owned();
        let node = format!(
            "amqps://{}:***@{}:{port}",
            url.username(),
            url.host_str().unwrap_or("127.0.0.1")
        );
        assert_refused_at_start(
            &ran,
            &node,
            "the server does not speak TLS on this port",
            "use amqp:// for a plain port",
            &format!(":{password}@"),
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn an_exchange_of_another_type_ends_the_relay_at_start() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let exchange = format!("{}.fanout", broker.exchange);
        let (connection, channel) = test_channel().await?;
        within(
            "declaring a fanout exchange",
            channel.exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        let outcome = async {
            let ran = run_until_exit(db, &amqp_url(), &exchange, "info").await?;
            assert_refused_at_start(
                &ran,
                &masked_node("guest"),
                &format!("exchange \"{exchange}\" exists with another type"),
                "--exchange",
                ":guest@",
            );
            assert!(
                ran.1.contains("current is 'fanout'"),
                "the broker's detail is kept: {}",
                ran.1
            );
            anyhow::Ok(())
        }
        .await;
        within(
            "deleting the fanout exchange",
            channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()),
        )
        .await?;
        let _ = within("closing", connection.close(200, "done".into())).await;
        outcome
    })
    .await
}

#[tokio::test]
async fn a_user_without_permission_on_the_exchange_ends_the_relay_at_start() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        // May use the vhost, but configure nothing: declaring the exchange is refused.
        let user = BrokerUser::on_default_vhost(["^$", ".*", ".*"]).await?;
        let outcome = async {
            let ran =
                run_until_exit(db, &user.url(&user.password), &broker.exchange, "info").await?;
            assert_refused_at_start(
                &ran,
                &masked_node(&user.name),
                &format!(
                    "user \"{}\" may not declare exchange \"{}\"",
                    user.name, broker.exchange
                ),
                &format!("rabbitmqctl set_permissions -p / {}", user.name),
                &user.password,
            );
            anyhow::Ok(())
        }
        .await;
        user.remove().await?;
        outcome
    })
    .await
}

#[tokio::test]
async fn a_wrong_password_ends_the_relay_at_start() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let user = BrokerUser::on_default_vhost([".*", ".*", ".*"]).await?;
        let wrong = format!("{}x", user.password);
        let outcome = async {
            let ran = run_until_exit(db, &user.url(&wrong), &broker.exchange, "trace").await?;
            assert_refused_at_start(
                &ran,
                &masked_node(&user.name),
                &format!("authentication failed for user \"{}\"", user.name),
                "check the user name and password",
                &user.password,
            );
            anyhow::Ok(())
        }
        .await;
        user.remove().await?;
        outcome
    })
    .await
}

/// How many lines of `log` say that the broker refuses the relay for `cause`.
fn refusal_lines(log: &str, cause: &str) -> usize {
    log.lines()
        .filter(|line| line.contains("the broker refuses the relay") && line.contains(cause))
        .count()
}

/// Waits until `/readyz` answers 503 naming `state` for the broker; returns the body.
async fn wait_for_readyz(relay: &RelayProcess, state: &str, within: Duration) -> Result<String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    loop {
        if let Ok((code, body)) = relay.get("/readyz").await {
            if code == 503 && body.contains(&format!("broker: {state}")) {
                return Ok(body);
            }
            last = body;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "/readyz did not say `broker: {state}` within {within:?}; it said: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After start the relay cannot exit over a refusal (its vhost deleted, say): it retries,
/// `/readyz` names the cause, the log says it once however many attempts are refused, and
/// says when the broker accepts the relay again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhost_deleted_after_start_shows_in_readyz_and_is_logged_once() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let user = BrokerUser::with_own_vhost().await?;
        let vhost = user.vhost.clone().unwrap_or_default();
        let log = log_path("refused-after-start");
        let outcome = async {
            let mut relay =
                RelayProcess::start(db, broker, &["--amqp-url", &user.url(&user.password)], &log)?;
            relay.wait_ready(Duration::from_secs(30)).await?;

            user.delete_vhost().await?;
            let cause = format!("vhost \"{vhost}\" does not exist");
            let body = wait_for_readyz(
                &relay,
                &format!("refused ({cause})"),
                Duration::from_secs(30),
            )
            .await?;
            assert!(body.starts_with("database: up\n"), "{body}");
            // Several attempts later, still said once, and the attempts given up on leave
            // no thread or socket behind (lapin's own recovery of each is bounded).
            let threads = |pid: u32| {
                std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |tasks| tasks.count())
            };
            let pid = relay.child.id().unwrap_or_default();
            let at_refusal = threads(pid);
            tokio::time::sleep(Duration::from_secs(24)).await;
            assert!(relay.is_running()?, "a refusal after start is retried");
            let later = threads(pid);
            assert!(
                later <= at_refusal + 2,
                "threads grew while the broker refused the relay: {at_refusal} then {later}"
            );
            let text = std::fs::read_to_string(&log)?;
            assert_eq!(
                refusal_lines(&text, &cause),
                1,
                "the refusal once, not once per attempt:\n{text}"
            );

            // The vhost is back (with the user's permissions): the relay is ready again.
            user.add_vhost().await?;
            relay.wait_ready(Duration::from_secs(30)).await?;
            let text = std::fs::read_to_string(&log)?;
            assert!(
                text.contains("the broker accepts the relay again"),
                "{text}"
            );
            relay.signal("TERM").await?;
            let status =
                tokio::time::timeout(Duration::from_secs(30), relay.child.wait()).await??;
            assert!(status.success(), "{status}");
            let text = std::fs::read_to_string(&log)?;
            assert!(!text.contains(&user.password), "{text}");
            assert_no_frames(&text);
            anyhow::Ok(())
        }
        .await;
        let _ = std::fs::remove_file(&log);
        user.remove().await?;
        outcome
    })
    .await
}

/// Someone deletes the relay's exchange and declares it again as a fanout: on its next
/// connection the relay's declaration is refused, `/readyz` says why, and once the
/// exchange is gone again the relay declares its own and is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_redeclared_with_another_type_after_start_shows_in_readyz() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let node = Proxy::to_broker().await?;
        let log = log_path("exchange-changed-after-start");
        let mut relay = RelayProcess::start(db, broker, &["--amqp-url", &node.amqp_url()?], &log)?;
        relay.wait_ready(Duration::from_secs(30)).await?;

        let (connection, channel) = test_channel().await?;
        let exchange = broker.exchange.as_str();
        within(
            "deleting the relay's exchange",
            channel.exchange_delete(exchange.into(), ExchangeDeleteOptions::default()),
        )
        .await?;
        within(
            "declaring it again as a fanout",
            channel.exchange_declare(
                exchange.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            ),
        )
        .await?;
        // The relay's connection drops (as in a broker restart): it connects and declares
        // again.
        node.reset();
        let cause = format!("exchange \"{exchange}\" exists with another type");
        let body = wait_for_readyz(&relay, "refused (", Duration::from_secs(30)).await?;
        assert!(body.contains(&cause), "{body}");

        within(
            "deleting the fanout exchange",
            channel.exchange_delete(exchange.into(), ExchangeDeleteOptions::default()),
        )
        .await?;
        let _ = within("closing", connection.close(200, "done".into())).await;
        relay.wait_ready(Duration::from_secs(30)).await?;
        relay.signal("TERM").await?;
        tokio::time::timeout(Duration::from_secs(30), relay.child.wait()).await??;
        let text = std::fs::read_to_string(&log)?;
        println!("{text}");
        assert_eq!(refusal_lines(&text, &cause), 1, "{text}");
        assert_no_frames(&text);
        let _ = std::fs::remove_file(&log);
        Ok(())
    })
    .await
}

/// A user who may declare the exchange but not publish to it passes the first contact
/// (write permission shows only when publishing): its publishes are refused, which costs
/// the events no attempt; `/readyz` names the cause until write permission is granted, and
/// the events then go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_not_publish_costs_the_events_no_attempt() -> Result<()> {
    with_db_and_broker(&["#"], async |db, broker| {
        let user = BrokerUser::on_default_vhost([".*", "^$", ".*"]).await?;
        let log = log_path("write-refused");
        let outcome = async {
            let mut relay = RelayProcess::start(
                db,
                broker,
                &[
                    "--amqp-url",
                    &user.url(&user.password),
                    "--max-attempts",
                    "2",
                ],
                &log,
            )?;
            let id = emit_ticket(
                &db.pool,
                uuid::Uuid::now_v7(),
                outbox_core::EmitOptions::default(),
            )
            .await?;
            let cause = format!(
                "user \"{}\" may not publish to exchange \"{}\"",
                user.name, broker.exchange
            );
            wait_for_readyz(
                &relay,
                &format!("refused ({cause}"),
                Duration::from_secs(30),
            )
            .await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let state = event_state(&db.pool, id).await?;
            assert_eq!(
                (state.status.as_str(), state.attempts),
                ("pending", 0),
                "a refused publish is not the event's failed attempt: {state:?}"
            );

            user.permit("/", [".*", ".*", ".*"]).await?;
            wait_until(
                Duration::from_secs(30),
                "the event to be delivered",
                || async { Ok(event_state(&db.pool, id).await?.status == "delivered") },
            )
            .await?;
            relay.wait_ready(Duration::from_secs(30)).await?;
            relay.signal("TERM").await?;
            tokio::time::timeout(Duration::from_secs(30), relay.child.wait()).await??;
            let text = std::fs::read_to_string(&log)?;
            println!("{text}");
            assert_eq!(refusal_lines(&text, &cause), 1, "{text}");
            assert!(!text.contains(&user.password), "{text}");
            assert_no_frames(&text);
            anyhow::Ok(())
        }
        .await;
        let _ = std::fs::remove_file(&log);
        user.remove().await?;
        outcome
    })
    .await
}
