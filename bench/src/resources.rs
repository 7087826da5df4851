//! `resources`: what the relay process costs while it drains a backlog.
//!
//! `--events` events are written (as in `drain`), then the release binary `outbox-relay`
//! found next to this program is started as a process of its own (`outbox-relay run` on
//! this scenario's database and exchange, defaults otherwise, metrics on an ephemeral
//! local port). When every event is delivered, before the process is stopped, its peak
//! resident set (`VmHWM` of `/proc/<pid>/status`) and its CPU time (`utime + stime` of
//! `/proc/<pid>/stat`, all threads, startup included) are read; then it gets SIGTERM and
//! must exit cleanly. Linux only.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Server;
use crate::broker::{self, Broker};
use crate::harness::{self, DRAIN_LIMIT};

/// Flags of `resources`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Events to drain.
    #[arg(long, default_value_t = 100_000)]
    pub events: i64,
    /// Ordering keys of those events.
    #[arg(long, default_value_t = 2_000)]
    pub keys: i64,
    /// The relay binary (default: `outbox-relay` next to this program).
    #[arg(long)]
    pub relay_binary: Option<PathBuf>,
}

/// The result of `resources`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Events drained.
    pub events: i64,
    /// Ordering keys.
    pub keys: i64,
    /// From the process's start to the last event delivered, seconds.
    pub seconds: f64,
    /// Events per second (process start included).
    pub events_per_second: f64,
    /// Peak resident set of the relay process, MiB (`VmHWM`).
    pub peak_rss_mib: f64,
    /// CPU time of the relay process, seconds (`utime + stime`).
    pub cpu_seconds: f64,
    /// `cpu_seconds` per 10,000 events.
    pub cpu_seconds_per_10k: f64,
    /// Threads of the relay process at the end.
    pub threads: u64,
    /// The peak resident set it should stay under, MiB (issue target).
    pub rss_target_mib: f64,
}

/// Runs `resources` in a database, exchange and queue of its own.
pub async fn run(args: &Args, server: &Server, amqp_url: &str, keep: bool) -> Result<Report> {
    ensure!(
        args.events >= 1 && args.keys >= 1,
        "--events and --keys must be at least 1"
    );
    let binary = match &args.relay_binary {
        Some(path) => path.clone(),
        None => relay_binary()?,
    };
    harness::with_scratch(server, "_resources", keep, async |scratch| {
        broker::with_broker(amqp_url, "resources", async |broker: &Broker| {
            let backlog = harness::fresh_backlog(scratch, args.events, args.keys).await?;
            let mut relay = RelayProcess::start(&binary, &scratch.url, amqp_url, &broker.exchange)?;
            let started = Instant::now();
            let outcome = tokio::select! {
                seconds = harness::wait_delivered(&scratch.pool, &backlog, started, DRAIN_LIMIT) => seconds,
                status = relay.child.wait() => Err(anyhow!("the relay exited before the backlog was delivered: {status:?}")),
            };
            let measured = match outcome {
                Ok(seconds) => usage(relay.pid).map(|usage| (seconds, usage)),
                Err(error) => Err(error),
            };
            let stopped = relay.stop().await;
            let (seconds, usage) = measured.map_err(|e| relay.explain(e))?;
            stopped.map_err(|e| relay.explain(e))?;
            let report = Report {
                events: args.events,
                keys: args.keys,
                seconds,
                events_per_second: args.events as f64 / seconds,
                peak_rss_mib: usage.peak_rss_kib as f64 / 1024.0,
                cpu_seconds: usage.cpu_seconds,
                cpu_seconds_per_10k: usage.cpu_seconds * 10_000.0 / args.events as f64,
                threads: usage.threads,
                rss_target_mib: 24.0,
            };
            eprintln!(
                "  relay process: {} events in {:.2} s = {:.0} events/s; peak RSS {:.1} MiB, CPU {:.2} s ({:.2} s per 10,000 events)",
                report.events,
                report.seconds,
                report.events_per_second,
                report.peak_rss_mib,
                report.cpu_seconds,
                report.cpu_seconds_per_10k
            );
            Ok(report)
        })
        .await
    })
    .await
}

/// `outbox-relay` in the directory of this program (where cargo puts both).
pub(crate) fn relay_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating outbox-bench itself")?;
    let dir = exe
        .parent()
        .context("outbox-bench's executable has no directory")?;
    let binary = dir.join(format!("outbox-relay{}", std::env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        bail!(
            "no relay binary at {}: build it with `cargo build --release -p outbox-relay` (or give --relay-binary)",
            binary.display()
        );
    }
    Ok(binary)
}

/// The relay running as a child process (killed when dropped), with the tail of its log.
pub(crate) struct RelayProcess {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    log: Arc<Mutex<VecDeque<String>>>,
}

/// Lines of the relay's log kept for an error message.
const LOG_TAIL: usize = 20;

/// Sees every line the relay writes on standard error (besides the tail kept).
pub(crate) type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

impl RelayProcess {
    fn start(binary: &Path, database_url: &str, amqp_url: &str, exchange: &str) -> Result<Self> {
        let args = relay_args(database_url, amqp_url, exchange)
            .into_iter()
            .chain(["--relay-id".to_owned(), "bench-relay-process".to_owned()])
            .collect::<Vec<_>>();
        Self::spawn(binary, &args, None)
    }

    /// Starts `binary` with `args`; `sink`, if any, sees every line of its log.
    pub(crate) fn spawn(binary: &Path, args: &[String], sink: Option<LineSink>) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the relay process has no id")?;
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(sink) = &sink {
                        sink(&line);
                    }
                    let mut tail = log.lock().unwrap_or_else(PoisonError::into_inner);
                    if tail.len() == LOG_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            });
        }
        Ok(RelayProcess { child, pid, log })
    }

    /// SIGTERM, then a clean exit within the relay's shutdown timeout (else SIGKILL).
    pub(crate) async fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            bail!("the relay process had already exited");
        }
        send_signal(self.pid, "TERM").await?;
        match tokio::time::timeout(Duration::from_secs(40), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                ensure!(
                    status.success(),
                    "the relay exited with {status} after SIGTERM"
                );
                Ok(())
            }
            Err(_) => {
                self.child.start_kill()?;
                bail!("the relay did not exit within 40 s of SIGTERM (killed)")
            }
        }
    }

    /// SIGKILL, then the exit reaped (within 10 s).
    pub(crate) async fn kill(&mut self) -> Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the relay process {} had already exited ({status})",
                self.pid
            );
        }
        send_signal(self.pid, "KILL").await?;
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .with_context(|| format!("the relay process {} outlived SIGKILL by 10 s", self.pid))?
            .context("waiting for the killed relay")
    }

    /// The last lines the relay logged.
    pub(crate) fn log_tail(&self) -> Vec<String> {
        let tail = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        tail.iter().cloned().collect()
    }

    /// `error` with the last lines the relay logged.
    pub(crate) fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        let tail = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        error.context(format!("the relay's last log lines:\n{}", lines.join("\n")))
    }
}

/// The flags of `outbox-relay run` on a scenario's database and exchange, metrics on an
/// ephemeral local port.
pub(crate) fn relay_args(database_url: &str, amqp_url: &str, exchange: &str) -> Vec<String> {
    [
        "run",
        "--database-url",
        database_url,
        "--amqp-url",
        amqp_url,
        "--exchange",
        exchange,
        "--http-addr",
        "127.0.0.1:0",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `kill -s <name> -- <pid>`: one process, never a group, never pid 0 or 1.
pub(crate) async fn send_signal(pid: u32, name: &str) -> Result<()> {
    ensure!(pid > 1, "refusing to signal pid {pid}");
    let status = Command::new("kill")
        .args(["-s", name, "--", &pid.to_string()])
        .status()
        .await
        .with_context(|| format!("running kill -s {name}"))?;
    ensure!(status.success(), "kill -s {name} -- {pid} failed");
    Ok(())
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`); Linux only.
pub(crate) fn status_kib(pid: u32, name: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (Linux only)"))?;
    status_field(&status, name).with_context(|| format!("no {name} in /proc/{pid}/status"))
}

fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// What `/proc` says about a process.
struct Usage {
    peak_rss_kib: u64,
    cpu_seconds: f64,
    threads: u64,
}

fn usage(pid: u32) -> Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (Linux only)"))?;
    let field = |name: &str| -> Result<u64> {
        status_field(&status, name).with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    let peak_rss_kib = field("VmHWM:")?;
    let threads = field("Threads:")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok(Usage {
        peak_rss_kib,
        cpu_seconds: cpu_ticks(&stat)? as f64 / clock_ticks(),
        threads,
    })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted from the
/// last `)`.
fn cpu_ticks(stat: &str) -> Result<u64> {
    let after_name = stat
        .rfind(')')
        .and_then(|end| stat.get(end + 1..))
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (the state).
    let tick = |field: usize| -> Result<u64> {
        fields
            .get(field - 3)
            .and_then(|value| value.parse().ok())
            .with_context(|| format!("no field {field} in /proc/<pid>/stat"))
    };
    Ok(tick(14)? + tick(15)?)
}

/// `sysconf(_SC_CLK_TCK)` as `getconf` prints it (100 on every common Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|&ticks| ticks > 0.0)
        .unwrap_or(100.0)
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let caption = format!(
        "resources: the `outbox-relay` release binary as a process of its own (defaults) draining {} events on {} keys",
        report.events, report.keys
    );
    let row = vec![
        format!("{:.2}", report.seconds),
        format!("{:.0}", report.events_per_second),
        format!(
            "{:.1} (target ≤ {:.0})",
            report.peak_rss_mib, report.rss_target_mib
        ),
        format!("{:.2}", report.cpu_seconds),
        format!("{:.3}", report.cpu_seconds_per_10k),
        report.threads.to_string(),
    ];
    let header = [
        "seconds",
        "events/s",
        "peak RSS MiB",
        "CPU s",
        "CPU s per 10,000 events",
        "threads",
    ];
    harness::table(&caption, 0, &header, &[row])
}

#[cfg(test)]
mod tests {
    use super::cpu_ticks;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let stat = "4242 (outbox (relay)) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 37 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_ticks(stat).ok(), Some(287));
    }
}
