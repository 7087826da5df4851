//! Private servers for tests that crash, stop or restart them: a throwaway PostgreSQL
//! cluster and a throwaway RabbitMQ node, each on ports of its own, so such a test never
//! touches the servers the rest of the suite shares.
//!
//! - [`PrivatePostgres::start`] runs `initdb` into a fresh directory and starts the cluster
//!   on a free loopback port; [`PrivatePostgres::restart`] (`pg_ctl restart`, or a crash
//!   and recovery with [`StopMode::Immediate`]) and [`PrivatePostgres::terminate_sessions`]
//!   (`pg_terminate_backend`) play the database's failures.
//! - [`PrivateRabbit::start`] starts a RabbitMQ node of its own (own node name, AMQP and
//!   distribution ports, data, logs and Erlang cookie; no plugins, so no management port);
//!   [`PrivateRabbit::restart_app`] restarts the broker inside the node (`stop_app` /
//!   `start_app`: every connection dropped, durable queues kept) and
//!   [`PrivateRabbit::restart`] the whole node.
//!
//! Both are stopped and their directories removed on drop, also when the test panics. A
//! test process that is killed outright leaves them running: their directories are named
//! `outbox-pg-*` and `outbox-rabbit-*` under the temporary directory.
//!
//! The binaries come from `pg_config --bindir` (or `PG_BINDIR`), and from the RabbitMQ
//! installation (`RABBITMQ_SBIN`, else the Debian layout, else `PATH`). When the test runs
//! as root, the PostgreSQL commands run as user `postgres` (`initdb` refuses root).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use integration_tests::servers::{PrivatePostgres, PrivateRabbit, StopMode};
//! let pg = PrivatePostgres::start().await?;
//! let url = pg.create_database("app").await?;
//! let rabbit = PrivateRabbit::start().await?;
//! let amqp = rabbit.amqp_url();
//! pg.restart(StopMode::Immediate).await?; // a crash, then recovery
//! rabbit.restart_app().await?;
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection as _};

use crate::{free_local_addr, unique_suffix};

/// How `pg_ctl` stops the server (its `-m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Waits for nothing, disconnects clients: a clean shutdown.
    Fast,
    /// Stops at once without a checkpoint: a crash; the next start runs recovery.
    Immediate,
}

impl StopMode {
    fn flag(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL cluster of the test's own (see the module documentation). User `postgres`,
/// trust authentication, loopback only. `fsync` is off: it survives any crash of the server
/// process (the kernel keeps what was written), not one of the machine.
pub struct PrivatePostgres {
    dir: PathBuf,
    data: PathBuf,
    bindir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Creates a cluster in a fresh temporary directory and starts it on a free port.
    pub async fn start() -> Result<Self> {
        Self::start_with_tls(None).await
    }

    /// [`PrivatePostgres::start`] with TLS on (`ssl = on`) when `tls` names a server
    /// certificate and its key (PEM; copied into the cluster's directory, the key owned by
    /// the server's user with mode 0600, as PostgreSQL requires).
    pub async fn start_with_tls(tls: Option<(&Path, &Path)>) -> Result<Self> {
        let bindir = postgres_bindir().await?;
        let as_postgres = running_as_root().await?;
        let dir = std::env::temp_dir().join(format!("outbox-pg-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let port = free_local_addr()?.port();
        let server = PrivatePostgres {
            data: dir.join("data"),
            dir,
            bindir,
            port,
            as_postgres,
        };
        if as_postgres {
            crate::run_command("chown", &["postgres:postgres", &server.dir_str()?]).await?;
        }
        let data = server.data_str()?;
        server
            .pg(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            )
            .await
            .context("initdb")?;
        let settings = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_connections = 200\nshared_buffers = 64MB\n\
             log_min_messages = warning\n",
            server.dir_str()?
        );
        append(&server.data.join("postgresql.conf"), &settings)?;
        if let Some((cert, key)) = tls {
            let (cert_copy, key_copy) =
                (server.dir.join("server.crt"), server.dir.join("server.key"));
            std::fs::copy(cert, &cert_copy).context("copy the server certificate")?;
            std::fs::copy(key, &key_copy).context("copy the server key")?;
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&key_copy, std::fs::Permissions::from_mode(0o600))?;
            }
            if as_postgres {
                for file in [&cert_copy, &key_copy] {
                    crate::run_command("chown", &["postgres:postgres", &path_str(file)?]).await?;
                }
            }
            let tls_settings = format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                path_str(&cert_copy)?,
                path_str(&key_copy)?
            );
            append(&server.data.join("postgresql.conf"), &tls_settings)?;
        }
        server.start_server().await?;
        Ok(server)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        let mut admin = self.admin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        Ok(self.url(name))
    }

    /// Starts the server (after [`PrivatePostgres::stop`]); returns once it accepts
    /// connections.
    pub async fn start_server(&self) -> Result<()> {
        let log = self.dir.join("server.log");
        let (data, log) = (self.data_str()?, path_str(&log)?);
        self.pg(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-t", "120", "start"],
        )
        .await
        .context("pg_ctl start")
    }

    /// Stops the server.
    pub async fn stop(&self, mode: StopMode) -> Result<()> {
        let data = self.data_str()?;
        self.pg(
            "pg_ctl",
            &["-D", &data, "-m", mode.flag(), "-w", "-t", "120", "stop"],
        )
        .await
        .context("pg_ctl stop")
    }

    /// Stops the server and starts it again; with [`StopMode::Immediate`] that is a crash
    /// and a recovery. Returns once it accepts connections.
    pub async fn restart(&self, mode: StopMode) -> Result<()> {
        self.stop(mode).await?;
        self.start_server().await
    }

    /// Ends every client session whose `application_name` starts with `prefix` (all client
    /// sessions when it is empty) with `pg_terminate_backend`, except this call's own;
    /// returns how many were ended.
    pub async fn terminate_sessions(&self, prefix: &str) -> Result<i64> {
        let mut admin = self.admin().await?;
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
               FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                AND starts_with(coalesce(application_name, ''), $1)",
        )
        .bind(prefix)
        .fetch_one(&mut admin)
        .await?;
        admin.close().await?;
        Ok(ended)
    }

    /// Ends every client session connected to `database` (see
    /// [`PrivatePostgres::terminate_sessions`]).
    pub async fn terminate_sessions_of(&self, database: &str) -> Result<i64> {
        let mut admin = self.admin().await?;
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
               FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                AND datname = $1",
        )
        .bind(database)
        .fetch_one(&mut admin)
        .await?;
        admin.close().await?;
        Ok(ended)
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    async fn admin(&self) -> Result<sqlx::PgConnection> {
        let options: PgConnectOptions = self.url("postgres").parse()?;
        options
            .connect()
            .await
            .context("connect to the private Postgres")
    }

    fn dir_str(&self) -> Result<String> {
        path_str(&self.dir)
    }

    fn data_str(&self) -> Result<String> {
        path_str(&self.data)
    }

    /// Runs one of the server's programs (as user `postgres` when we are root).
    async fn pg(&self, program: &str, args: &[&str]) -> Result<()> {
        let binary = path_str(&self.bindir.join(program))?;
        if self.as_postgres {
            let mut full = vec!["-u", "postgres", "--", binary.as_str()];
            full.extend_from_slice(args);
            crate::run_command("runuser", &full).await
        } else {
            crate::run_command(&binary, args).await
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let (Ok(data), Ok(binary)) =
            (path_str(&self.data), path_str(&self.bindir.join("pg_ctl")))
        {
            let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
            let mut command = if self.as_postgres {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--", binary.as_str()]).args(args);
                c
            } else {
                let mut c = std::process::Command::new(&binary);
                c.args(args);
                c
            };
            let _ = command.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RabbitMQ node of the test's own (see the module documentation), user `guest` /
/// `guest` on loopback.
pub struct PrivateRabbit {
    node: String,
    port: u16,
    dir: PathBuf,
    env: Vec<(String, String)>,
    sbin: PathBuf,
    server: Option<std::process::Child>,
}

impl PrivateRabbit {
    /// Starts a node (own name, ports, directories and cookie) and waits until the broker
    /// is up (which takes a few seconds).
    pub async fn start() -> Result<Self> {
        let suffix = unique_suffix();
        let dir = std::env::temp_dir().join(format!("outbox-rabbit-{suffix}"));
        std::fs::create_dir_all(dir.join("log"))?;
        std::fs::create_dir_all(dir.join("mnesia"))?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(
            dir.join("rabbitmq.conf"),
            "loopback_users.guest = true\nlog.console = false\nlog.file.level = warning\n",
        )?;
        let node = format!("outbox-{suffix}@localhost");
        let port = free_local_addr()?.port();
        let dist_port = free_local_addr()?.port();
        let dir_text = path_str(&dir)?;
        let env = vec![
            ("RABBITMQ_NODENAME".to_owned(), node.clone()),
            (
                "RABBITMQ_NODE_IP_ADDRESS".to_owned(),
                "127.0.0.1".to_owned(),
            ),
            ("RABBITMQ_NODE_PORT".to_owned(), port.to_string()),
            ("RABBITMQ_DIST_PORT".to_owned(), dist_port.to_string()),
            (
                "RABBITMQ_MNESIA_BASE".to_owned(),
                format!("{dir_text}/mnesia"),
            ),
            ("RABBITMQ_LOG_BASE".to_owned(), format!("{dir_text}/log")),
            (
                "RABBITMQ_PID_FILE".to_owned(),
                format!("{dir_text}/rabbit.pid"),
            ),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE".to_owned(),
                format!("{dir_text}/enabled_plugins"),
            ),
            (
                "RABBITMQ_CONFIG_FILE".to_owned(),
                format!("{dir_text}/rabbitmq.conf"),
            ),
            // The Erlang cookie lives in $HOME: a cookie of the node's own.
            ("HOME".to_owned(), dir_text.clone()),
        ];
        let mut rabbit = PrivateRabbit {
            node,
            port,
            dir,
            env,
            sbin: rabbitmq_sbin(),
            server: None,
        };
        rabbit.spawn_node()?;
        rabbit.await_startup().await?;
        Ok(rabbit)
    }

    /// The node's name (`outbox-<suffix>@localhost`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Its AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Restarts the broker application inside the node (`stop_app`, `start_app`): every
    /// client connection is closed, durable queues and persistent messages stay. Returns
    /// once the broker accepts connections again.
    pub async fn restart_app(&self) -> Result<()> {
        self.ctl(&["stop_app"]).await?;
        self.ctl(&["start_app"]).await?;
        self.await_startup().await
    }

    /// Stops the broker application (`stop_app`): connections are refused until
    /// [`PrivateRabbit::start_app`].
    pub async fn stop_app(&self) -> Result<()> {
        self.ctl(&["stop_app"]).await
    }

    /// Starts the broker application again after [`PrivateRabbit::stop_app`].
    pub async fn start_app(&self) -> Result<()> {
        self.ctl(&["start_app"]).await?;
        self.await_startup().await
    }

    /// Stops the whole node and starts it again (a longer outage than
    /// [`PrivateRabbit::restart_app`]).
    pub async fn restart(&mut self) -> Result<()> {
        self.ctl(&["stop"]).await?;
        if let Some(mut child) = self.server.take() {
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
        self.spawn_node()?;
        self.await_startup().await
    }

    /// Runs `rabbitmqctl -n <node> <args>` (for what the methods do not cover).
    pub async fn ctl(&self, args: &[&str]) -> Result<()> {
        let output = tokio::process::Command::new(self.sbin.join("rabbitmqctl"))
            .args(["-n", &self.node])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(120), output)
            .await
            .with_context(|| format!("rabbitmqctl {args:?} did not finish"))??;
        if !output.status.success() {
            bail!(
                "rabbitmqctl -n {} {args:?} failed: {}{}",
                self.node,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Waits until the broker application runs and its AMQP port answers.
    async fn await_startup(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = self.ctl(&["await_startup", "--timeout", "10"]).await;
            if ready.is_ok()
                && tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return ready.and_then(|()| bail!("port {} does not answer", self.port));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn spawn_node(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("log").join("server.out"))?;
        let child = std::process::Command::new(self.sbin.join("rabbitmq-server"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start rabbitmq-server")?;
        self.server = Some(child);
        Ok(())
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        // A graceful stop first, bounded; then whatever is left is killed.
        if let Ok(mut stop) = std::process::Command::new(self.sbin.join("rabbitmqctl"))
            .args(["-n", &self.node, "stop"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && matches!(stop.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = stop.kill();
            let _ = stop.wait();
        }
        // A pid, never a group or -1 (see `crate::send_signal` on the spelling).
        let pid = std::fs::read_to_string(self.dir.join("rabbit.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .filter(|&pid| pid > 1);
        if let Some(pid) = pid {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where RabbitMQ's own scripts are (not the Debian wrappers in `/usr/sbin`, which switch
/// to user `rabbitmq` and drop the environment this module sets).
fn rabbitmq_sbin() -> PathBuf {
    if let Ok(dir) = std::env::var("RABBITMQ_SBIN") {
        return PathBuf::from(dir);
    }
    let debian = PathBuf::from("/usr/lib/rabbitmq/bin");
    if debian.join("rabbitmq-server").exists() {
        return debian;
    }
    // On PATH: run as named.
    PathBuf::new()
}

/// `PG_BINDIR`, or `pg_config --bindir`.
async fn postgres_bindir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let output = tokio::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .await
        .context("pg_config --bindir (set PG_BINDIR to the PostgreSQL binaries instead)")?;
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || dir.is_empty() {
        bail!("pg_config --bindir failed; set PG_BINDIR");
    }
    Ok(PathBuf::from(dir))
}

async fn running_as_root() -> Result<bool> {
    let output = tokio::process::Command::new("id")
        .arg("-u")
        .output()
        .await?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn path_str(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
