//! `outbox-relay`: run the relay, or operate the outbox (migrate, catalog, replay, ...).
//!
//! This file parses the command line and dispatches; each command family lives in `cmd/`,
//! and the work itself in the `outbox_relay` library.

mod cli;
mod cmd;

use std::process::ExitCode;

use cli::{Command, LogFormat};

fn main() -> ExitCode {
    let cli = cli::parse();
    outbox_relay::foundation::logging::init(cli.log_format == LogFormat::Json);
    // One thread: the relay waits on its servers far more than it computes (0.4 CPU
    // seconds per 10,000 events), and every extra thread costs a malloc arena (RSS).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Not shut down: the AMQP client may still be retrying a connection on a thread of its
    // own, which panics (printing a backtrace) when it finds the runtime shutting down. The
    // process ends here anyway.
    std::mem::forget(runtime);
    code
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    let done = |()| ExitCode::SUCCESS;
    match command {
        Command::Run(args) => cmd::run::run(*args).await,
        Command::Migrate(args) => cmd::migrate::run(&args).await.map(done),
        Command::Catalog(args) => cmd::catalog::catalog(args.command).map(done),
        Command::Replay(args) => cmd::ops::replay(args).await,
        Command::Discard(args) => cmd::ops::discard(args).await,
        Command::Audit(args) => cmd::ops::audit(args).await.map(done),
        Command::Status(args) => cmd::ops::status(args).await,
        Command::Inspect(args) => cmd::ops::inspect(args).await.map(done),
        Command::Purge(args) => cmd::ops::purge(args).await.map(done),
        Command::Wakeup(args) => cmd::wakeup::wakeup(args).await.map(done),
    }
}
