//! `all`: every scenario with its defaults, one report.
//!
//! Runs `drain` (which measures the `ceiling` first), `scale-out`, `resources`, `latency`,
//! `emit-cost` and `claim-shapes`, each in a database and on an exchange of its own, and
//! prints one Markdown report or (`--json`) one JSON document, which `render` turns into
//! plots and the generated part of `docs/benchmarks.md`. `claim-shapes` runs with
//! `--rows 100000` here (its own default of 1,000,000 rows per shape takes many minutes on
//! a small machine; `--claim-rows` changes it, 0 skips it).

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

use crate::machine::{self, Machine};
use crate::{Server, drain_rate, emit_cost, harness, latency, resources, scale_out, shapes};

/// Flags of `all`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Events of `drain` and `scale-out` (and messages of the ceiling).
    #[arg(long, default_value_t = 50_000)]
    pub events: i64,
    /// Backlogs of `resources`, one relay process each (comma-separated): the issue's
    /// memory target is checked on a 50,000 and a 100,000-event drain.
    #[arg(long, value_delimiter = ',', default_value = "50000,100000")]
    pub resources_events: Vec<i64>,
    /// Seconds of `latency` (at its default rate of 1,000/s).
    #[arg(long, default_value_t = 30.0)]
    pub latency_seconds: f64,
    /// Rows per shape of `claim-shapes` (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    pub claim_rows: i64,
    /// Scenarios to leave out (drain, scale-out, resources, latency, emit-cost,
    /// claim-shapes).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
}

/// Scenario names `--skip` accepts.
const SCENARIOS: [&str; 6] = [
    "drain",
    "scale-out",
    "resources",
    "latency",
    "emit-cost",
    "claim-shapes",
];

/// A scenario whose report this program only prints: its Markdown and its JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Embedded {
    /// The scenario's own Markdown report.
    pub markdown: String,
    /// Its JSON report.
    pub data: serde_json::Value,
}

/// Everything `all` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The machine and servers.
    pub machine: Machine,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
    /// `drain`, with the ceiling of the same run.
    pub drain: Option<drain_rate::Report>,
    /// `scale-out`.
    pub scale_out: Option<scale_out::Report>,
    /// `resources`, one per backlog of `--resources-events`.
    pub resources: Vec<resources::Report>,
    /// `latency`.
    pub latency: Option<latency::Report>,
    /// `emit-cost`.
    pub emit_cost: Option<Embedded>,
    /// `claim-shapes` (at `--claim-rows` rows per shape).
    pub claim_shapes: Option<Embedded>,
}

/// Parses `flags` as the command line of scenario `name`: its defaults, plus the flags.
fn scenario_args<A: clap::Args + clap::FromArgMatches>(
    name: &'static str,
    flags: &[String],
) -> Result<A> {
    let command = A::augment_args(clap::Command::new(name).no_binary_name(true));
    let matches = command
        .try_get_matches_from(flags)
        .with_context(|| format!("the flags of {name}"))?;
    Ok(A::from_arg_matches(&matches)?)
}

fn embed<T: Serialize>(report: &T, markdown: fn(&T) -> String) -> Result<Embedded> {
    Ok(Embedded {
        markdown: markdown(report),
        data: serde_json::to_value(report)?,
    })
}

/// Runs every scenario not skipped.
pub async fn run(args: &Args, server: &Server, urls: (&str, &str), keep: bool) -> Result<Report> {
    let (database_url, amqp_url) = urls;
    for name in &args.skip {
        ensure!(
            SCENARIOS.contains(&name.as_str()),
            "--skip {name}: not a scenario (one of {})",
            SCENARIOS.join(", ")
        );
    }
    let wanted = |name: &str| !args.skip.iter().any(|s| s == name);
    let started = Instant::now();
    let machine = machine::describe(database_url, amqp_url).await?;
    let events = args.events.to_string();
    let mut report = Report {
        machine,
        seconds: 0.0,
        drain: None,
        scale_out: None,
        resources: Vec::new(),
        latency: None,
        emit_cost: None,
        claim_shapes: None,
    };
    if wanted("drain") {
        eprintln!("== drain (with the ceiling)");
        let args: drain_rate::Args = scenario_args("drain", &[format!("--events={events}")])?;
        report.drain = Some(drain_rate::run(&args, server, amqp_url, keep).await?);
    }
    if wanted("scale-out") {
        eprintln!("== scale-out");
        let args: scale_out::Args = scenario_args("scale-out", &[format!("--events={events}")])?;
        report.scale_out = Some(scale_out::run(&args, server, amqp_url, keep).await?);
    }
    if wanted("resources") {
        for events in &args.resources_events {
            eprintln!("== resources ({events} events)");
            let flags = [format!("--events={events}")];
            let args: resources::Args = scenario_args("resources", &flags)?;
            report
                .resources
                .push(resources::run(&args, server, amqp_url, keep).await?);
        }
    }
    if wanted("latency") {
        eprintln!("== latency");
        let flags = [format!("--seconds={}", args.latency_seconds)];
        let args: latency::Args = scenario_args("latency", &flags)?;
        report.latency = Some(latency::run(&args, server, amqp_url, keep).await?);
    }
    if wanted("emit-cost") {
        eprintln!("== emit-cost");
        let args: emit_cost::Args = scenario_args("emit-cost", &[])?;
        let measured = harness::with_scratch(server, "_emit_cost", keep, async |scratch| {
            emit_cost::run(&args, scratch).await
        })
        .await?;
        report.emit_cost = Some(embed(&measured, emit_cost::markdown)?);
    }
    if wanted("claim-shapes") && args.claim_rows > 0 {
        eprintln!("== claim-shapes");
        let flags = [format!("--rows={}", args.claim_rows)];
        let args: shapes::Args = scenario_args("claim-shapes", &flags)?;
        let measured = shapes::run(&args, server, keep).await?;
        report.claim_shapes = Some(embed(&measured, shapes::markdown)?);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0.0 && digits != "0" {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn met(ok: bool) -> String {
    if ok { "met" } else { "**missed**" }.to_owned()
}

/// Two relays' drain rate over one relay's, at least (issue 19).
const SCALE_OUT_TARGET: f64 = 1.5;

/// A claim's p95 in every backlog shape, at most, milliseconds (issue 19, at 1,000,000 rows).
const CLAIM_TARGET_MS: f64 = 50.0;

/// The shape of an `emit-cost` target check this report reads.
#[derive(Debug, Deserialize)]
struct EmitTargetView {
    write: String,
    connections: usize,
    cost_ratio: f64,
    limit: f64,
}

/// The shape of a `claim-shapes` result this report reads.
#[derive(Debug, Deserialize)]
struct ShapeView {
    shape: ShapeName,
    first_ms: f64,
    claim: crate::summary::Summary,
}

#[derive(Debug, Deserialize)]
struct ShapeName {
    number: u8,
    name: String,
}

/// The report as Markdown; `images` is the path prefix of the plots (`render` writes
/// them), `None` for no plots.
pub fn markdown(report: &Report, images: Option<&str>) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(
        out,
        "Run of {} ({:.0} s in all): {} CPUs ({}), {:.0} GiB, Linux {}, PostgreSQL {} (jit {}), RabbitMQ {}, outbox-bench {}, release build.\n",
        m.started_at,
        report.seconds,
        m.cpus,
        m.cpu_model,
        m.memory_gib,
        m.kernel,
        m.postgres,
        m.postgres_jit,
        m.rabbitmq,
        m.bench_version
    );
    targets(&mut out, report);
    throughput(&mut out, report, images);
    if let Some(l) = &report.latency {
        let _ = writeln!(out, "### Latency\n");
        if let Some(prefix) = images {
            let _ = writeln!(out, "![commit → receive latency]({prefix}latency.svg)\n");
        }
        out.push_str(&latency::markdown(l));
        out.push('\n');
    }
    if !report.resources.is_empty() {
        let _ = writeln!(out, "### Resources\n");
        for r in &report.resources {
            out.push_str(&resources::markdown(r));
            out.push('\n');
        }
    }
    if let Some(e) = &report.emit_cost {
        let _ = writeln!(out, "### Emit cost\n");
        out.push_str(&e.markdown);
        out.push('\n');
    }
    if let Some(c) = &report.claim_shapes {
        claim_shapes(&mut out, c);
    }
    out
}

fn targets(out: &mut String, report: &Report) {
    let mut rows = Vec::new();
    if let Some(d) = &report.drain {
        rows.push(vec![
            format!("drain ≥ {:.2} × the ceiling of the same run", d.target),
            format!(
                "{:.2} ({} of {} events/s)",
                d.ratio_to_ceiling,
                thousands(d.drain.events_per_second),
                thousands(d.ceiling.messages_per_second)
            ),
            met(d.ratio_to_ceiling >= d.target),
        ]);
    }
    if let Some(l) = &report.latency {
        let held = l.achieved_rate >= 0.99 * l.target_rate;
        rows.push(vec![
            format!(
                "p99 commit → receive ≤ {:.0} ms at {} events/s",
                l.target_p99_ms,
                thousands(l.target_rate)
            ),
            format!(
                "p99 {:.1} ms at {} events/s achieved",
                l.latency_ms.p99,
                thousands(l.achieved_rate)
            ),
            met(held && l.latency_ms.p99 <= l.target_p99_ms),
        ]);
    }
    for r in &report.resources {
        rows.push(vec![
            format!(
                "relay peak RSS ≤ {:.0} MiB draining {} events",
                r.rss_target_mib,
                thousands(r.events as f64)
            ),
            format!("{:.1} MiB", r.peak_rss_mib),
            met(r.peak_rss_mib <= r.rss_target_mib),
        ]);
    }
    if let Some(s) = &report.scale_out
        && let (Some(one), Some(two)) = (
            s.runs.iter().find(|r| r.relays == 1),
            s.runs.iter().find(|r| r.relays == 2),
        )
    {
        let ratio = two.events_per_second / one.events_per_second;
        rows.push(vec![
            format!("2 relays drain ≥ {SCALE_OUT_TARGET:.1} × as fast as 1"),
            format!(
                "{ratio:.2} × ({} vs {} events/s)",
                thousands(two.events_per_second),
                thousands(one.events_per_second)
            ),
            met(ratio >= SCALE_OUT_TARGET),
        ]);
    }
    if let Some(e) = &report.emit_cost {
        let checks: Vec<EmitTargetView> = e
            .data
            .get("targets")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        for t in checks {
            let path = match t.write.as_str() {
                "plain_sql" => "plain SQL",
                other => other,
            };
            rows.push(vec![
                format!(
                    "one-event transaction ({path}) ≤ {:.2} × the plain-INSERT floor at {} connections",
                    t.limit, t.connections
                ),
                format!("{:.2} ×", t.cost_ratio),
                met(t.cost_ratio <= t.limit),
            ]);
        }
    }
    if let Some(c) = &report.claim_shapes {
        let rows_per_shape = c.data.get("rows").and_then(|v| v.as_i64()).unwrap_or(0);
        let shapes: Vec<ShapeView> = c
            .data
            .get("shapes")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        if let Some(worst) = shapes
            .iter()
            .max_by(|a, b| a.claim.p95.total_cmp(&b.claim.p95))
        {
            rows.push(vec![
                format!(
                    "claim p95 ≤ {CLAIM_TARGET_MS:.0} ms in every shape at {} rows",
                    thousands(rows_per_shape as f64)
                ),
                format!(
                    "worst: {:.1} ms (shape {}, {})",
                    worst.claim.p95, worst.shape.number, worst.shape.name
                ),
                met(worst.claim.p95 <= CLAIM_TARGET_MS),
            ]);
        }
    }
    out.push_str(&harness::table("", 3, &["target", "this run", ""], &rows));
    out.push('\n');
}

/// One scenario's throughput.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// Which scenario.
    pub label: String,
    /// Events (messages) it moved.
    pub events: i64,
    /// In how many seconds.
    pub seconds: f64,
    /// Per second.
    pub rate: f64,
}

/// The throughput of every scenario that has one, the ceiling first.
pub fn throughputs(report: &Report) -> Vec<Throughput> {
    let mut rows = Vec::new();
    let mut add = |label: String, events: i64, seconds: f64, rate: f64| {
        rows.push(Throughput {
            label,
            events,
            seconds,
            rate,
        });
    };
    if let Some(d) = &report.drain {
        let c = &d.ceiling;
        let ceiling = "ceiling: confirmed publish, no database".to_owned();
        add(ceiling, c.messages as i64, c.seconds, c.messages_per_second);
        let drain = "drain: 1 relay (in-process)".to_owned();
        add(
            drain,
            d.drain.events,
            d.drain.seconds,
            d.drain.events_per_second,
        );
    }
    if let Some(s) = &report.scale_out {
        for run in &s.runs {
            let plural = if run.relays == 1 { "" } else { "s" };
            let label = format!("scale-out: {} relay{plural}", run.relays);
            add(label, run.events, run.seconds, run.events_per_second);
        }
    }
    for r in &report.resources {
        let label = format!(
            "resources: relay process, {} events",
            thousands(r.events as f64)
        );
        add(label, r.events, r.seconds, r.events_per_second);
    }
    rows
}

fn throughput(out: &mut String, report: &Report, images: Option<&str>) {
    let measured = throughputs(report);
    if measured.is_empty() {
        return;
    }
    let _ = writeln!(out, "### Throughput\n");
    if let Some(prefix) = images {
        let _ = writeln!(out, "![throughput per scenario]({prefix}throughput.svg)\n");
    }
    let ceiling = report.drain.as_ref().map(|d| d.ceiling.messages_per_second);
    let rows: Vec<Vec<String>> = measured
        .iter()
        .map(|t| {
            vec![
                t.label.clone(),
                thousands(t.events as f64),
                format!("{:.2}", t.seconds),
                thousands(t.rate),
                ceiling.map_or_else(|| "–".to_owned(), |c| format!("{:.2}", t.rate / c)),
            ]
        })
        .collect();
    let header = ["scenario", "events", "seconds", "per second", "× ceiling"];
    out.push_str(&harness::table("", 1, &header, &rows));
    out.push('\n');
    for part in [
        report.drain.as_ref().map(drain_rate::markdown),
        report.scale_out.as_ref().map(scale_out::markdown),
    ]
    .into_iter()
    .flatten()
    {
        out.push_str(&part);
        out.push('\n');
    }
}

fn claim_shapes(out: &mut String, embedded: &Embedded) {
    let data = &embedded.data;
    let rows = data.get("rows").and_then(|v| v.as_i64()).unwrap_or(0);
    let shapes: Vec<ShapeView> = data
        .get("shapes")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let rows_of: Vec<Vec<String>> = shapes
        .iter()
        .map(|s| {
            vec![
                s.shape.number.to_string(),
                s.shape.name.clone(),
                format!("{:.1}", s.first_ms),
                format!("{:.1}", s.claim.median),
                format!("{:.1}", s.claim.p95),
                format!("{:.1}", s.claim.max),
            ]
        })
        .collect();
    let caption = format!(
        "### Claim cost at {} rows per shape",
        thousands(rows as f64)
    );
    let header = [
        "#",
        "shape",
        "first claim ms",
        "median ms",
        "p95 ms",
        "max ms",
    ];
    out.push_str(&harness::table(&caption, 2, &header, &rows_of));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(-12345.0), "-12,345");
    }
}
