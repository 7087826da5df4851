//! The deployment files (`Dockerfile`, `docker-compose.yml`, `deploy/kubernetes/`,
//! `deploy/observability/`) parse, and name only what the relay really has: subcommands and
//! flags from the built binary's `--help`, environment variables from its `[env: …]` lines,
//! its HTTP port and paths, and metric names from a real relay's `/metrics` after it
//! delivered events. The relay is then started exactly as the compose file and the
//! Kubernetes sidecar start it (their command, arguments and environment; only the URLs and
//! the port are the test's), and answers on the probes' paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use integration_tests::{
    TestBroker, TestDb, amqp_url, emit_tickets, free_local_addr, http_get, relay_binary,
    wait_until, wait_until_settled, with_db_and_broker,
};
use serde_norway::Value;

// ---------------------------------------------------------------------------------------
// What the relay binary says about itself
// ---------------------------------------------------------------------------------------

/// One subcommand's `--help`: its flags, environment variables and defaults.
#[derive(Debug, Default)]
struct Help {
    flags: BTreeSet<String>,
    envs: BTreeSet<String>,
    /// Flag → default, as `--help` prints it.
    defaults: BTreeMap<String, String>,
}

fn help_text(args: &[&str]) -> String {
    help_text_of(&relay_binary().unwrap(), args)
}

/// `<binary> <args> --help` (the relay, or an example binary built beside it).
fn help_text_of(binary: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(binary)
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} {args:?} --help failed",
        binary.display()
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Parses clap's long help: `--flag <VALUE>` lines, `[alias: --x]`, `[env: NAME=…]` and
/// `[default: …]` lines (which belong to the flag above them).
fn help(args: &[&str]) -> Help {
    parse_help(&help_text(args))
}

fn parse_help(text: &str) -> Help {
    let mut help = Help::default();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--")
            || trimmed.starts_with("-h, --")
            || trimmed.starts_with("-V, --")
        {
            let flag = trimmed
                .trim_start_matches("-h, ")
                .trim_start_matches("-V, ")
                .trim_start_matches("--")
                .split([' ', '<', '='])
                .next()
                .unwrap()
                .to_owned();
            help.flags.insert(flag.clone());
            current = Some(flag);
        } else if let Some(rest) = trimmed.strip_prefix("[alias: --") {
            help.flags.insert(rest.trim_end_matches(']').to_owned());
        } else if let Some(rest) = trimmed.strip_prefix("[env: ") {
            let name = rest
                .trim_end_matches(']')
                .split('=')
                .next()
                .unwrap()
                .to_owned();
            help.envs.insert(name);
        } else if let Some(rest) = trimmed.strip_prefix("[default: ")
            && let Some(flag) = &current
        {
            help.defaults
                .insert(flag.clone(), rest.trim_end_matches(']').to_owned());
        }
    }
    help
}

/// The subcommands listed by `outbox-relay --help`.
fn subcommands() -> BTreeSet<String> {
    let text = help_text(&[]);
    let commands = text
        .split("Commands:")
        .nth(1)
        .expect("a Commands: section")
        .split("Options:")
        .next()
        .unwrap();
    commands
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| *word != "help")
        .map(str::to_owned)
        .collect()
}

/// Environment variables the relay reads besides its flags' (`RUST_LOG` sets log levels).
const LOG_ENV: &str = "RUST_LOG";

/// Checks a relay command line (`run --migrate`, …) against the binary's help, returning
/// that subcommand's help.
fn check_command(args: &[String], context: &str) -> Help {
    let subcommand = args
        .first()
        .unwrap_or_else(|| panic!("{context}: no subcommand"));
    assert!(
        subcommands().contains(subcommand),
        "{context}: `{subcommand}` is not an outbox-relay subcommand"
    );
    let help = help(&[subcommand]);
    for arg in &args[1..] {
        if let Some(flag) = arg.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap();
            assert!(
                help.flags.contains(flag),
                "{context}: `--{flag}` is not a flag of `outbox-relay {subcommand}`"
            );
        }
    }
    help
}

fn check_env(name: &str, help: &Help, context: &str) {
    assert!(
        name == LOG_ENV || help.envs.contains(name),
        "{context}: `{name}` is not an environment variable of the relay (known: {:?})",
        help.envs
    );
}

/// The port of `--http-addr`'s default (`0.0.0.0:9187`).
fn default_http_port() -> u16 {
    let run = help(&["run"]);
    port_of(
        run.defaults
            .get("http-addr")
            .expect("--http-addr has a default"),
    )
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// The files
// ---------------------------------------------------------------------------------------

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every YAML document of a file.
fn yaml_documents(path: &str) -> Vec<Value> {
    use serde::Deserialize;
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
        })
        .collect()
}

fn yaml(path: &str) -> Value {
    let mut documents = yaml_documents(path);
    assert_eq!(documents.len(), 1, "{path}: one document");
    documents.remove(0)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => panic!("not a string: {other:?}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// `name: value` pairs of a compose `environment` mapping.
fn compose_env(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .map(|env| env.iter().map(|(k, v)| (text(k), text(v))).collect())
        .unwrap_or_default()
}

/// The `FROM … AS <name>` stages of the Dockerfile, in order.
fn docker_stages(dockerfile: &str) -> Vec<String> {
    dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .filter_map(|line| line.split(" AS ").nth(1).map(|s| s.trim().to_owned()))
        .collect()
}

/// The example binaries of `outbox-examples` (`examples/src/bin/<name>.rs`).
fn example_binaries() -> BTreeSet<String> {
    std::fs::read_dir(root().join("examples/src/bin"))
        .unwrap()
        .map(|entry| {
            entry
                .unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Dockerfile and compose
// ---------------------------------------------------------------------------------------

#[test]
fn dockerfile_builds_a_non_root_relay_image_with_real_commands() {
    let dockerfile = read("Dockerfile");
    let stages = docker_stages(&dockerfile);
    assert_eq!(
        stages.last().map(String::as_str),
        Some("relay"),
        "the default target is the relay"
    );
    assert!(stages.iter().any(|s| s == "examples"), "{stages:?}");
    assert!(
        read(".dockerignore").lines().any(|l| l.trim() == "target/"),
        ".dockerignore keeps target/ out of the context"
    );

    let relay_stage = dockerfile.split("AS relay").nth(1).unwrap();
    let port = default_http_port();
    let run = help(&["run"]);
    let instructions: Vec<&str> = relay_stage.lines().map(str::trim).collect();
    let user = instructions
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the relay stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER");
    assert_ne!(uid, 0, "the relay runs as a non-root user");
    assert!(
        instructions.contains(&r#"RUN ["outbox-relay", "--version"]"#),
        "the build runs `outbox-relay --version`"
    );
    assert!(
        instructions.contains(&format!("EXPOSE {port}").as_str()),
        "EXPOSE the relay's port {port}"
    );
    let healthcheck = relay_stage
        .split("HEALTHCHECK")
        .nth(1)
        .expect("a HEALTHCHECK")
        .split("\nENTRYPOINT")
        .next()
        .unwrap();
    assert!(
        healthcheck.contains(&format!("http://127.0.0.1:{port}/healthz")),
        "{healthcheck}"
    );
    for line in &instructions {
        if let Some(env) = line.strip_prefix("ENV ") {
            for pair in env.split_whitespace() {
                let (name, value) = pair.split_once('=').unwrap();
                check_env(name, &run, "Dockerfile ENV");
                if name == "OUTBOX_HTTP_ADDR" {
                    assert_eq!(port_of(value), port);
                }
            }
        }
    }
    assert!(instructions.contains(&r#"ENTRYPOINT ["outbox-relay"]"#));
    // The image's CMD, not the HEALTHCHECK's (an indented continuation line).
    let cmd = relay_stage
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd).unwrap();
    check_command(&cmd, "Dockerfile CMD");
}

#[test]
fn compose_runs_the_relay_and_the_examples_with_real_flags_env_and_ports() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<String> = services.keys().map(text).collect();
    for wanted in [
        "postgres",
        "rabbitmq",
        "relay",
        "consumer",
        "domain-service",
    ] {
        assert!(names.contains(wanted), "compose has no service {wanted}");
    }
    let stages = docker_stages(&read("Dockerfile"));
    for (name, service) in services {
        let name = text(name);
        if let Some(target) = service["build"]["target"].as_str() {
            assert!(
                stages.iter().any(|s| s == target),
                "{name}: no stage {target}"
            );
        }
        if let Some(depends) = service["depends_on"].as_mapping() {
            for dependency in depends.keys() {
                assert!(
                    names.contains(&text(dependency)),
                    "{name} depends on {dependency:?}"
                );
            }
        }
    }

    // The relay: a real command, real variables, the port it listens on published.
    let relay = &compose["services"]["relay"];
    let command = strings(&relay["command"]);
    assert_eq!(command, ["run", "--migrate"]);
    let help = check_command(&command, "compose relay");
    let env = compose_env(relay);
    for name in env.keys() {
        check_env(name, &help, "compose relay");
    }
    let port = port_of(&env["OUTBOX_HTTP_ADDR"]);
    assert_eq!(port, default_http_port());
    let published: Vec<u16> = strings(&relay["ports"])
        .iter()
        .map(|p| port_of(p))
        .collect();
    assert_eq!(published, [port], "compose publishes the relay's HTTP port");
    assert!(
        env["DATABASE_URL"].contains("@postgres:5432/")
            && env["AMQP_URL"].contains("@rabbitmq:5672/"),
        "the relay reaches the compose servers: {env:?}"
    );

    // The examples: binaries that exist, variables and flags they read.
    let binaries = example_binaries();
    for name in ["consumer", "domain-service"] {
        let service = &compose["services"][name];
        let command = strings(&service["command"]);
        let binary = &command[0];
        assert!(
            binaries.contains(binary),
            "{name}: no example binary {binary}"
        );
        let source = read(&format!("examples/src/bin/{binary}.rs"));
        if source.contains("use clap::") {
            // A command line of its own (the consumer): the subcommand, flags and variables
            // are checked against the built binary's `--help`.
            let path = relay_binary().unwrap().with_file_name(binary);
            let subcommand = command.get(1).expect("a subcommand").as_str();
            let help = parse_help(&help_text_of(&path, &[subcommand]));
            for arg in command.iter().skip(2).filter(|a| a.starts_with("--")) {
                let flag = arg.trim_start_matches("--").split('=').next().unwrap();
                assert!(
                    help.flags.contains(flag),
                    "{name}: `{binary} {subcommand}` takes no {arg}"
                );
            }
            for variable in compose_env(service).keys() {
                assert!(
                    help.envs.contains(variable),
                    "{name}: `{binary} {subcommand}` does not read {variable}"
                );
            }
        } else {
            for arg in command.iter().skip(1).filter(|a| a.starts_with("--")) {
                assert!(
                    source.contains(&format!("\"{arg}\"")),
                    "{binary} takes no {arg}"
                );
            }
            for variable in compose_env(service).keys() {
                assert!(
                    source.contains(&format!("\"{variable}\"")),
                    "{binary} does not read {variable}"
                );
            }
        }
    }

    // RabbitMQ: management UI, quorum queues by default.
    let rabbitmq = &compose["services"]["rabbitmq"];
    assert!(text(&rabbitmq["image"]).ends_with("-management"));
    assert!(
        strings(&rabbitmq["ports"])
            .iter()
            .any(|p| p.ends_with(":15672"))
    );
    let mounted = strings(&rabbitmq["volumes"]);
    let config = mounted
        .iter()
        .find(|v| v.starts_with("./deploy/"))
        .expect("a RabbitMQ config from deploy/");
    let host_path = config.split(':').next().unwrap().trim_start_matches("./");
    assert!(
        read(host_path)
            .lines()
            .any(|l| l.trim() == "default_queue_type = quorum")
    );
}

// ---------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------

fn kubernetes_documents() -> Vec<(String, Value)> {
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|path| {
            let relative = format!(
                "deploy/kubernetes/{}",
                path.file_name().unwrap().to_string_lossy()
            );
            yaml_documents(&relative)
                .into_iter()
                .map(move |doc| (relative.clone(), doc))
        })
        .collect()
}

fn of_kind<'a>(documents: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    documents
        .iter()
        .filter(|(_, d)| d["kind"].as_str() == Some(kind))
        .map(|(_, d)| d)
        .collect()
}

/// The relay's container in a pod spec (a container whose image is the relay's), in
/// `initContainers` (native sidecar) or `containers`.
fn relay_container(pod: &Value) -> &Value {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|list| pod[*list].as_sequence())
        .flatten()
        .find(|c| {
            c["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("outbox-relay:"))
        })
        .expect("a container running the outbox-relay image")
}

fn mebibytes(quantity: &str) -> f64 {
    let number = |suffix: &str| quantity.trim_end_matches(suffix).parse::<f64>().unwrap();
    if quantity.ends_with("Mi") {
        number("Mi")
    } else if quantity.ends_with("Gi") {
        number("Gi") * 1024.0
    } else {
        panic!("memory quantity {quantity} is not in Mi or Gi")
    }
}

/// Checks a container's `env` entries: real variables, Secret references that exist.
fn check_container_env(
    container: &Value,
    help: &Help,
    secrets: &BTreeMap<String, BTreeSet<String>>,
    context: &str,
) {
    for entry in container["env"].as_sequence().into_iter().flatten() {
        let name = text(&entry["name"]);
        check_env(&name, help, context);
        let secret = &entry["valueFrom"]["secretKeyRef"];
        if secret.is_mapping() {
            let secret_name = text(&secret["name"]);
            let key = text(&secret["key"]);
            assert!(
                secrets
                    .get(&secret_name)
                    .is_some_and(|keys| keys.contains(&key)),
                "{context}: {name} refers to {secret_name}/{key}, which secret.example.yaml does not define"
            );
        }
    }
}

#[test]
fn kubernetes_sidecar_and_migration_job_use_real_flags_env_probes_and_sizes() {
    let documents = kubernetes_documents();
    let secrets: BTreeMap<String, BTreeSet<String>> = of_kind(&documents, "Secret")
        .into_iter()
        .map(|s| {
            let keys = s["stringData"]
                .as_mapping()
                .unwrap()
                .keys()
                .map(text)
                .collect();
            (text(&s["metadata"]["name"]), keys)
        })
        .collect();
    assert!(!secrets.is_empty(), "an example Secret");
    let version = String::from_utf8(
        std::process::Command::new(relay_binary().unwrap())
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let version = version
        .trim()
        .strip_prefix("outbox-relay ")
        .unwrap()
        .to_owned();
    let port = default_http_port();

    let deployments = of_kind(&documents, "Deployment");
    assert_eq!(deployments.len(), 1);
    let deployment = deployments[0];
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    let relay = relay_container(pod);
    assert_eq!(text(&relay["image"]), format!("outbox-relay:{version}"));
    let args = strings(&relay["args"]);
    let help = check_command(&args, "Deployment relay");
    assert_eq!(args[0], "run");
    check_container_env(relay, &help, &secrets, "Deployment relay");
    for required in ["DATABASE_URL", "AMQP_URL"] {
        let entry = relay["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"].as_str() == Some(required))
            .unwrap_or_else(|| panic!("the relay gets {required}"));
        assert!(
            entry["valueFrom"]["secretKeyRef"].is_mapping(),
            "{required} comes from a Secret"
        );
    }
    let http_addr = relay["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("OUTBOX_HTTP_ADDR"))
        .map(|e| port_of(&text(&e["value"])))
        .unwrap_or(port);
    assert_eq!(http_addr, port);

    // The port, the probes, the scrape annotations.
    let ports = relay["ports"].as_sequence().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["containerPort"].as_u64(), Some(u64::from(port)));
    let port_name = text(&ports[0]["name"]);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &relay[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        let probe_port = text(&get["port"]);
        assert!(
            probe_port == port_name || probe_port == port.to_string(),
            "{probe} port"
        );
    }
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(port.to_string().as_str())
    );
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));

    // Resources from docs/benchmarks.md: 20.2 MiB peak RSS draining at full speed.
    let requests = &relay["resources"]["requests"];
    let limits = &relay["resources"]["limits"];
    let request = mebibytes(&text(&requests["memory"]));
    let limit = mebibytes(&text(&limits["memory"]));
    assert!(
        (21.0..=64.0).contains(&request),
        "memory request {request} MiB"
    );
    assert!(
        limit >= request * 1.5,
        "memory limit {limit} MiB leaves room above the request"
    );
    assert!(requests["cpu"].is_string(), "a CPU request");

    // Shutdown: the pod waits longer than the relay's drain bound (the manifest's, else the
    // default).
    let drain = relay["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("OUTBOX_SHUTDOWN_TIMEOUT"))
        .map(|e| text(&e["value"]))
        .unwrap_or_else(|| help.defaults.get("shutdown-timeout").unwrap().clone());
    let drain = humantime_seconds(&drain);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > drain,
        "grace {grace}s must exceed --shutdown-timeout {drain}s"
    );

    // The service container gets its database from the same Secret.
    let service = pod["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| {
            c["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("outbox-examples:"))
        })
        .expect("the example service");
    let command = strings(&service["command"]).join(" ");
    assert!(
        example_binaries()
            .iter()
            .any(|b| command.contains(b.as_str())),
        "the service runs an example binary: {command}"
    );
    // A shell as the container's PID 1 ignores SIGTERM unless it traps it: the service would
    // hold the pod for the whole grace period, and the relay, stopped after it, would get no
    // time to drain.
    if command.starts_with("/bin/sh") || command.starts_with("sh ") {
        assert!(
            command.contains("trap ") && command.contains("TERM"),
            "the service's shell (PID 1) must trap SIGTERM: {command}"
        );
    }

    // The migration Job.
    let jobs = of_kind(&documents, "Job");
    assert_eq!(jobs.len(), 1);
    let job_pod = &jobs[0]["spec"]["template"]["spec"];
    let migrate = relay_container(job_pod);
    assert_eq!(text(&migrate["image"]), format!("outbox-relay:{version}"));
    let args = strings(&migrate["args"]);
    assert_eq!(args, ["migrate"]);
    let migrate_help = check_command(&args, "migration Job");
    check_container_env(migrate, &migrate_help, &secrets, "migration Job");
    assert_eq!(job_pod["restartPolicy"].as_str(), Some("OnFailure"));

    // Both run as the image's non-root user.
    for spec in [pod, job_pod] {
        assert_eq!(
            spec["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true)
        );
        assert_ne!(spec["securityContext"]["runAsUser"].as_u64(), Some(0));
    }

    // The kustomization lists files that exist.
    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    for resource in strings(&kustomization["resources"]) {
        assert!(
            root().join("deploy/kubernetes").join(&resource).exists(),
            "{resource}"
        );
    }
}

/// `30s`, `1m`, `2h` → seconds (clap prints defaults the way they were written).
fn humantime_seconds(text: &str) -> u64 {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap());
    let number: u64 = number.parse().unwrap();
    match unit {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        other => panic!("unit {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// Observability: rules and dashboard against a real relay's /metrics
// ---------------------------------------------------------------------------------------

/// Every PromQL expression of the alert rules, with its alert's name.
fn alert_expressions() -> Vec<(String, String)> {
    let rules = yaml("deploy/observability/prometheus-rules.yaml");
    let mut expressions = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        assert!(group["name"].is_string());
        for rule in group["rules"].as_sequence().expect("rules") {
            let alert = text(&rule["alert"]);
            assert!(rule["labels"]["severity"].is_string(), "{alert}: severity");
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{alert}: summary"
            );
            assert!(
                rule["annotations"]["description"].is_string(),
                "{alert}: description"
            );
            expressions.push((alert, text(&rule["expr"])));
        }
    }
    expressions
}

/// Every PromQL expression of the Grafana dashboard (panels and template queries).
fn dashboard_expressions() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/observability/grafana-dashboard.json"))
            .expect("the dashboard is JSON");
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            expressions.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            expressions.push(query.to_owned());
        }
    }
    expressions
}

/// The `outbox_…` series names an expression uses.
fn outbox_names(expression: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expression;
    while let Some(start) = rest.find("outbox_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The series names of a Prometheus text exposition.
fn exposed_names(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

#[test]
fn alert_rules_cover_the_required_conditions() {
    let expressions = alert_expressions();
    let all: String = expressions
        .iter()
        .map(|(_, e)| e.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for (what, needle) in [
        ("oldest pending age", "outbox_oldest_pending_age_seconds"),
        ("dead events", "outbox_dead_events"),
        ("blocked keys", "outbox_blocked_keys"),
        ("relay down", "up{"),
        ("confirm latency", "outbox_publish_confirm_seconds_bucket"),
    ] {
        assert!(all.contains(needle), "no alert on {what} ({needle})");
    }
    let names: BTreeSet<&String> = expressions.iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), expressions.len(), "alert names are unique");
}

/// Starts `outbox-relay <args>` with exactly `env` (plus `PATH`), stderr to a log file.
fn spawn_relay(
    args: &[String],
    env: &BTreeMap<String, String>,
    log: &Path,
) -> Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(relay_binary()?);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true);
    Ok(command.spawn()?)
}

async fn wait_http_ok(addr: std::net::SocketAddr, path: &str, log: &Path) -> Result<()> {
    wait_until(
        Duration::from_secs(60),
        &format!("{path} answers 200"),
        || async { Ok(matches!(http_get(addr, path).await, Ok((200, _)))) },
    )
    .await
    .with_context(|| std::fs::read_to_string(log).unwrap_or_default())
}

async fn stop(mut child: tokio::process::Child) -> Result<()> {
    let pid = child.id().context("the relay already exited")?;
    integration_tests::send_signal(pid, "TERM").await?;
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait()).await??;
    ensure!(
        status.success(),
        "the relay exited with {status} after SIGTERM"
    );
    Ok(())
}

/// The Kubernetes sidecar's arguments and environment, with the Secret's values and the
/// pod's name replaced by the test's.
fn sidecar_environment(
    db: &TestDb,
    broker: &TestBroker,
    addr: std::net::SocketAddr,
) -> (Vec<String>, BTreeMap<String, String>) {
    let documents = kubernetes_documents();
    let deployment = of_kind(&documents, "Deployment")[0];
    let relay = relay_container(&deployment["spec"]["template"]["spec"]);
    let mut env = BTreeMap::new();
    for entry in relay["env"].as_sequence().unwrap() {
        let name = text(&entry["name"]);
        let value = match (&entry["value"], &entry["valueFrom"]) {
            (Value::String(value), _) => value.clone(),
            (_, from) if from["secretKeyRef"]["key"].as_str() == Some("database-url") => db.url(),
            (_, from) if from["secretKeyRef"]["key"].as_str() == Some("amqp-url") => amqp_url(),
            (_, from) if from["fieldRef"].is_mapping() => "ticket-service-7d4b9c-x2x9q".to_owned(),
            (value, from) => panic!("{name}: cannot resolve {value:?} / {from:?}"),
        };
        env.insert(name, value);
    }
    env.insert("OUTBOX_EXCHANGE".to_owned(), broker.exchange.clone());
    env.insert("OUTBOX_HTTP_ADDR".to_owned(), addr.to_string());
    // Fast test settings on top of the manifest's (these flags are checked above).
    env.insert("OUTBOX_POLL_INTERVAL".to_owned(), "200ms".to_owned());
    env.insert("OUTBOX_GAUGE_INTERVAL".to_owned(), "200ms".to_owned());
    (strings(&relay["args"]), env)
}

#[tokio::test]
async fn the_sidecar_as_configured_delivers_and_exposes_every_metric_the_rules_and_dashboard_use()
-> Result<()> {
    with_db_and_broker(&["#"], async |db: &TestDb, broker: &TestBroker| {
        let addr = free_local_addr()?;
        let (args, env) = sidecar_environment(db, broker, addr);
        let log = integration_tests::log_path("deploy-sidecar");
        let relay = spawn_relay(&args, &env, &log)?;
        let documents = kubernetes_documents();
        let container =
            relay_container(&of_kind(&documents, "Deployment")[0]["spec"]["template"]["spec"])
                .clone();
        for probe in ["livenessProbe", "readinessProbe"] {
            wait_http_ok(addr, &text(&container[probe]["httpGet"]["path"]), &log).await?;
        }

        // Deliver events, so the histograms have samples.
        let ids = emit_tickets(&db.pool, 20, 4).await?;
        wait_until_settled(&db.pool, &ids, Duration::from_secs(60)).await?;
        let (_, received) = broker
            .received_ids(ids.len(), Duration::from_secs(10))
            .await?;
        ensure!(
            received >= ids.len(),
            "{received} of {} messages arrived",
            ids.len()
        );
        let mut metrics = String::new();
        for _ in 0..100 {
            let (status, body) = http_get(addr, "/metrics").await?;
            ensure!(status == 200, "/metrics answered {status}");
            metrics = body;
            if metrics.contains("outbox_end_to_end_lag_seconds") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop(relay).await?;

        let exposed = exposed_names(&metrics);
        let mut missing = BTreeMap::<String, Vec<String>>::new();
        for (alert, expression) in alert_expressions() {
            for name in outbox_names(&expression) {
                if !exposed.contains(&name) {
                    missing
                        .entry(name)
                        .or_default()
                        .push(format!("alert {alert}"));
                }
            }
        }
        for expression in dashboard_expressions() {
            for name in outbox_names(&expression) {
                if !exposed.contains(&name) {
                    missing
                        .entry(name)
                        .or_default()
                        .push("dashboard".to_owned());
                }
            }
        }
        if !missing.is_empty() {
            bail!(
                "names used by deploy/observability that the relay's /metrics does not expose: \
                 {missing:#?}\nexposed: {exposed:#?}"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_compose_relay_command_migrates_an_empty_database_and_becomes_ready() -> Result<()> {
    let db = TestDb::empty().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let outcome = async {
        let compose = yaml("docker-compose.yml");
        let relay = &compose["services"]["relay"];
        let args = strings(&relay["command"]);
        let mut env = compose_env(relay);
        let addr = free_local_addr()?;
        env.insert("DATABASE_URL".to_owned(), db.url());
        env.insert("AMQP_URL".to_owned(), amqp_url());
        env.insert("OUTBOX_EXCHANGE".to_owned(), broker.exchange.clone());
        env.insert("OUTBOX_HTTP_ADDR".to_owned(), addr.to_string());
        let log = integration_tests::log_path("deploy-compose");
        let child = spawn_relay(&args, &env, &log)?;
        wait_http_ok(addr, "/readyz", &log).await?;
        let migrated: bool = sqlx::query_scalar("SELECT to_regclass('outbox_events') IS NOT NULL")
            .fetch_one(&db.pool)
            .await?;
        ensure!(migrated, "--migrate created the outbox table");
        let ids = emit_tickets(&db.pool, 3, 1).await?;
        wait_until_settled(&db.pool, &ids, Duration::from_secs(30)).await?;
        stop(child).await
    }
    .await;
    let broker_cleaned = broker.cleanup().await;
    let db_cleaned = db.cleanup().await;
    outcome.and(broker_cleaned).and(db_cleaned)
}
