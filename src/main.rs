//! The `fulfill` binary: parse arguments, resolve the settings once, run one command, and
//! turn its result into an exit code. Everything else lives in the library.

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::Parser;

use fulfill::cli::{Cli, GlobalArgs};
use fulfill::commands::{self, Context, Output};
use fulfill::config;
use fulfill::exit::{self, Exit};
use fulfill::progress;
use fulfill::text::printable;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // At a terminal a status line shows what a run waits for; away from one (cron) log
    // lines carry their time instead.
    let terminal = io::stderr().is_terminal();
    init_logging(&cli.global, terminal);
    if terminal && !cli.global.json && !cli.global.quiet {
        progress::enable();
    }
    // `completions` and `man` need no config: they work before (or without) one.
    if let Some(outcome) = cli.command.execute_without_settings() {
        return ExitCode::from(exit_of(outcome, terminal) as u8);
    }
    let exit = match context(&cli) {
        Ok(context) => {
            let exit = exit_of(cli.command.execute(&context), terminal);
            if let Some(command) = cli.command.recorded_as() {
                commands::write_metrics(&context, command, exit);
            }
            exit
        }
        Err(err) => exit_of(Err(err), terminal),
    };
    ExitCode::from(exit as u8)
}

/// What every command runs with: the settings resolved once, and the clock read once.
fn context(cli: &Cli) -> anyhow::Result<Context> {
    Ok(Context {
        settings: config::load(&cli.global.overrides())?,
        now: time::OffsetDateTime::now_utc(),
        output: Output {
            json: cli.global.json,
            quiet: cli.global.quiet,
        },
    })
}

/// How a run ended, the error (if any) printed.
fn exit_of(outcome: anyhow::Result<Exit>, terminal: bool) -> Exit {
    commands::unless_stopped_by_watchdog();
    match outcome {
        Ok(exit) => exit,
        // `fulfill list | head` closes our stdout early: that is a normal end.
        Err(err) if is_broken_pipe(&err) => Exit::Done,
        Err(err) => {
            // Errors carry servers' and files' text: printed escaped (fulfill::text).
            eprintln!(
                "{}fulfill: error: {}",
                log_prefix(terminal),
                printable(&exit::describe(&err))
            );
            Exit::for_error(&err)
        }
    }
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
fn init_logging(global: &GlobalArgs, terminal: bool) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, 2) => log::LevelFilter::Debug,
        (false, _) => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format(move |buf, record| {
            use std::io::Write;
            writeln!(
                buf,
                "{}fulfill: {}: {}",
                log_prefix(terminal),
                record.level().as_str().to_lowercase(),
                printable(&record.args().to_string())
            )
        })
        // The status line, when one shows, steps aside for each log line.
        .target(env_logger::Target::Pipe(Box::new(progress::LogWriter)))
        .init();
}

/// "2026-11-29T12:00:00Z " when stderr is not a terminal, else nothing.
fn log_prefix(terminal: bool) -> String {
    if terminal {
        return String::new();
    }
    let now = time::OffsetDateTime::now_utc();
    format!("{} ", fulfill::store::timestamp(now))
}
