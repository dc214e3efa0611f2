//! The `fulfill` binary: parse arguments, load settings, run one command, and turn its
//! result into an exit code. Everything else lives in the library.

use std::io;
use std::process::ExitCode;

use clap::Parser;

use fulfill::cli::{Cli, Command, GlobalArgs};
use fulfill::commands::{self, Exit, UsageError};
use fulfill::config::{self, ConfigError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    match try_main(&cli) {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(err) => {
            // `fulfill list | head` closes our stdout early: that is a normal end.
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("fulfill: error: {err:#}");
            ExitCode::from(exit_for(&err) as u8)
        }
    }
}

/// Runs the command; its `Exit` says how it ended when it ran to the end.
fn try_main(cli: &Cli) -> anyhow::Result<Exit> {
    let settings = config::load(&cli.global)?;
    // Read the clock once: the pure modules take `now` as an argument.
    let now = time::OffsetDateTime::now_utc();
    let json = cli.global.json;
    match &cli.command {
        Command::Import(args) => commands::import::run(args, &settings, json, now),
        Command::List(args) => commands::list::run(args, &settings, json, now),
        Command::Show(args) => commands::show::run(args, &settings, json, now),
        Command::Orders => commands::orders::run(&settings, json, now),
        Command::Resend(args) => commands::resend::run(args, &settings, json, now),
        Command::Check => commands::check::run(&settings, json, now),
        Command::Poll(args) => commands::poll::run(args, &settings, json, cli.global.quiet, now),
        Command::ResendAndImport(args) => {
            commands::resend_and_import::run(args, &settings, json, cli.global.quiet, now)
        }
    }
}

/// The one place errors become exit codes: usage and configuration mistakes are 2,
/// everything else that stops a command is 1.
fn exit_for(err: &anyhow::Error) -> Exit {
    if err
        .chain()
        .any(|cause| cause.is::<UsageError>() || cause.is::<ConfigError>())
    {
        return Exit::Usage;
    }
    Exit::Failure
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|e| e.io_error_kind())
                .is_some_and(|kind| kind == io::ErrorKind::BrokenPipe)
    })
}

/// Logs go to stderr so stdout stays clean for `--json` and scripts.
fn init_logging(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, 2) => log::LevelFilter::Debug,
        (false, _) => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format(|buf, record| {
            use std::io::Write;
            writeln!(
                buf,
                "fulfill: {}: {}",
                record.level().as_str().to_lowercase(),
                record.args()
            )
        })
        .target(env_logger::Target::Stderr)
        .init();
}
