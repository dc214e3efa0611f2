//! The command line (clap derive): the global options and the subcommands. Each
//! subcommand's arguments live in its own file under commands/, with their `execute`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::commands::log::LogArgs;
use crate::commands::{
    Context, check::CheckArgs, completions::CompletionsArgs, deploy::DeployArgs,
    import::ImportArgs, list::ListArgs, man::ManArgs, orders::OrdersArgs, poll::PollArgs,
    replace::ReplaceArgs, resend::ResendArgs, resend_and_import::ResendAndImportArgs,
    show::ShowArgs,
};
use crate::config::Overrides;
use crate::exit::Exit;

/// Resend, fetch, validate and import SoftLayer SSL fulfillment emails.
#[derive(Debug, Parser)]
#[command(name = "fulfill", version, about, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 done or nothing to do, 1 failure, 2 usage or configuration error, \
3 timed out waiting for mail, 4 certificate rejected or none in the mail, 75 another run holds the lock."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes, before or after its name.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file [default: $XDG_CONFIG_HOME/fulfill/config.toml]
    #[arg(long, global = true, env = "FULFILL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// SQLite database [default: $XDG_DATA_HOME/fulfill/fulfill.db]
    #[arg(long, global = true, env = "FULFILL_DB", value_name = "FILE")]
    pub db: Option<PathBuf>,

    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More detail on stderr (-v, -vv, -vvv)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Extract, validate and record the certificates in saved fulfillment emails
    #[command(after_help = "Examples:
  fulfill import --no-upload saved/*.eml       validate and record, upload nothing
  fulfill import --order 1557047799 cert.zip   a file downloaded from a link-only mail
  fulfill import --dry-run - < mail.eml        report only, from standard input")]
    Import(ImportArgs),
    /// List recorded certificates, soonest expiry first
    List(ListArgs),
    /// Show one recorded certificate
    Show(ShowArgs),
    /// The account's SSL orders in the portal, with status and whether fulfill has their certificate
    Orders(OrdersArgs),
    /// Ask the CA, through the portal, to send an order's fulfillment email again
    Resend(ResendArgs),
    /// Check what a run will use: config, keys, trust roots, database, portal, mailbox
    #[command(after_help = "Examples:
  fulfill check                                       the default config
  fulfill --config /etc/fulfill/config.toml check     the one a service uses
  sudo -u fulfill fulfill --config /etc/fulfill/config.toml check   as the service's user")]
    Check(CheckArgs),
    /// Scan the mailbox for fulfillment emails and import what matches
    #[command(after_help = "Examples:
  fulfill poll                 import what arrived since the last run
  fulfill poll --wait 10m      then wait up to 10 minutes for a matching mail (exit 3 if none)
  fulfill poll --dry-run -v    say what would be imported, change nothing")]
    Poll(PollArgs),
    /// The whole loop, safe from cron: resend the fulfillment email, wait for it, validate,
    /// upload, record, deploy
    #[command(after_help = "Examples:
  fulfill resend-and-import --order 1557047799       one order, waiting up to 15 minutes
  fulfill -q resend-and-import --all-pending --timeout 20m   what the timer and cron run
  fulfill resend-and-import --all-pending --dry-run  say what would be resent, change nothing")]
    ResendAndImport(ResendAndImportArgs),
    /// Run the deploy hook for recorded certificates: those named, or every one whose hook
    /// has not run or failed (--pending)
    Deploy(DeployArgs),
    /// Move the load balancer listeners that use an older certificate of the same name to a
    /// recorded certificate, waiting for each load balancer to be ACTIVE again
    #[command(after_help = "Examples:
  fulfill replace --certificate 12 --dry-run   each listener, its load balancer, old and new ids
  fulfill replace --certificate 12             move them, as [portal] replace_in_use does")]
    Replace(ReplaceArgs),
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell)
    #[command(after_help = "Examples:
  fulfill completions bash > /etc/bash_completion.d/fulfill
  fulfill completions zsh > \"${fpath[1]}/_fulfill\"
  fulfill completions fish > ~/.config/fish/completions/fulfill.fish")]
    Completions(CompletionsArgs),
    /// Print the manual page, fulfill(1), in roff
    #[command(after_help = "Example:
  fulfill man > /usr/local/share/man/man1/fulfill.1 && man fulfill")]
    Man(ManArgs),
    /// The audit trail (the `events` table), oldest first
    Log(LogArgs),
}

impl Command {
    /// The commands that need no settings (`completions`, `man`), run before the config
    /// file is read, so they work without one, or with a broken one; `None` for the others.
    pub fn execute_without_settings(&self) -> Option<anyhow::Result<Exit>> {
        match self {
            Command::Completions(args) => Some(args.execute()),
            Command::Man(args) => Some(args.execute()),
            _ => None,
        }
    }

    pub fn execute(&self, context: &Context) -> anyhow::Result<Exit> {
        if let Some(outcome) = self.execute_without_settings() {
            return outcome;
        }
        match self {
            Command::Import(args) => args.execute(context),
            Command::List(args) => args.execute(context),
            Command::Show(args) => args.execute(context),
            Command::Orders(args) => args.execute(context),
            Command::Resend(args) => args.execute(context),
            Command::Check(args) => args.execute(context),
            Command::Poll(args) => args.execute(context),
            Command::ResendAndImport(args) => args.execute(context),
            Command::Deploy(args) => args.execute(context),
            Command::Replace(args) => args.execute(context),
            Command::Log(args) => args.execute(context),
            Command::Completions(_) | Command::Man(_) => unreachable!("run without settings"),
        }
    }
}

impl Command {
    /// The name a run is recorded under for `[metrics] textfile`, for the commands that use
    /// the database; `None` for the others and for a dry run, which writes nothing.
    pub fn recorded_as(&self) -> Option<&'static str> {
        match self {
            Command::Import(args) if !args.dry_run => Some("import"),
            Command::Poll(args) if !args.dry_run => Some("poll"),
            Command::ResendAndImport(args) if !args.dry_run => Some("resend-and-import"),
            Command::Deploy(_) => Some("deploy"),
            Command::Replace(args) if !args.dry_run => Some("replace"),
            Command::Resend(_) => Some("resend"),
            Command::Check(_) => Some("check"),
            _ => None,
        }
    }
}

impl GlobalArgs {
    /// What the command line says before the config file does.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            database: self.db.clone(),
        }
    }
}
