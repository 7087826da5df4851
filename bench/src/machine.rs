//! The machine and servers a report was measured on.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::{ConnectOptions, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the numbers come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs available to the benchmark.
    pub cpus: usize,
    /// CPU model (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Physical memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// PostgreSQL `server_version`.
    pub postgres: String,
    /// PostgreSQL's `jit` setting.
    pub postgres_jit: String,
    /// RabbitMQ version (from the server properties of the AMQP handshake).
    pub rabbitmq: String,
    /// This program's version.
    pub bench_version: String,
    /// When the run started (UTC, RFC 3339).
    pub started_at: String,
}

/// Reads the machine and asks both servers for their versions.
pub async fn describe(database_url: &str, amqp_url: &str) -> Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| std::env::consts::OS.to_owned());
    let options: sqlx::postgres::PgConnectOptions =
        database_url.parse().context("--database-url")?;
    let mut conn = options.connect().await.context("connecting to Postgres")?;
    let (postgres, postgres_jit): (String, String) =
        sqlx::query_as("SELECT current_setting('server_version'), current_setting('jit')")
            .fetch_one(&mut conn)
            .await?;
    conn.close().await?;
    Ok(Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        memory_gib: memory_kib / 1024.0 / 1024.0,
        kernel,
        postgres,
        postgres_jit,
        rabbitmq: rabbitmq_version(amqp_url)
            .await
            .unwrap_or_else(|error| format!("unknown ({error:#})")),
        bench_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// The broker's `version` server property: the first frame a broker sends after the
/// protocol header (`connection.start`) carries it; the connection is dropped right after.
async fn rabbitmq_version(amqp_url: &str) -> Result<String> {
    let url = url::Url::parse(amqp_url).context("--amqp-url")?;
    let host = url.host_str().context("--amqp-url has no host")?;
    let port = url.port().unwrap_or(5672);
    let read = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
        stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
        let mut buffer = vec![0u8; 4096];
        let mut filled = 0;
        // Frame header (7 bytes) then its payload; the properties fit in a few hundred bytes.
        while filled < buffer.len() {
            let n = stream.read(&mut buffer[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
            if let Some(version) = version_property(&buffer[..filled]) {
                return anyhow::Ok(version);
            }
        }
        anyhow::bail!("no version in the broker's connection.start")
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .context("the broker did not answer within 5 s")?
}

/// The long-string value of the `version` field in a `connection.start` frame, if complete.
fn version_property(frame: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\x07versionS";
    let at = frame.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len_bytes: [u8; 4] = frame.get(at..at + 4)?.try_into().ok()?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let value = frame.get(at + 4..at + 4 + len)?;
    Some(String::from_utf8_lossy(value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::version_property;

    #[test]
    fn finds_the_version_long_string() {
        let mut frame = b"\x01\x00\x00junk\x07productS\x00\x00\x00\x08RabbitMQ".to_vec();
        frame.extend_from_slice(b"\x07versionS\x00\x00\x00\x063.10.8\x08");
        assert_eq!(version_property(&frame).as_deref(), Some("3.10.8"));
        assert_eq!(version_property(&frame[..frame.len() - 4]), None);
    }
}
