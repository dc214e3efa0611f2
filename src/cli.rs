//! Command-line definitions (clap derive) and nothing else.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

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
    Import(ImportArgs),
    /// List recorded certificates, soonest expiry first
    List(ListArgs),
    /// Show one recorded certificate
    Show(ShowArgs),
    /// The account's SSL orders in the portal, with status and whether fulfill has their certificate
    Orders,
    /// Ask the CA, through the portal, to send an order's fulfillment email again
    Resend(ResendArgs),
    /// Check the configuration, keys, trust roots and portal authentication
    Check,
    /// Scan the mailbox for fulfillment emails and import what matches
    Poll(PollArgs),
    /// The whole loop, safe from cron: resend the fulfillment email, wait for it, validate,
    /// upload, record, deploy
    ResendAndImport(ResendAndImportArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["order", "all_pending"])))]
pub struct ResendAndImportArgs {
    /// An order to complete (repeatable)
    #[arg(long, value_name = "ID")]
    pub order: Vec<i64>,

    /// Every order in the portal without an imported certificate
    #[arg(long)]
    pub all_pending: bool,

    /// How long to wait for the mails
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,

    /// Do not ask the CA to resend; only wait for the mail
    #[arg(long)]
    pub no_resend: bool,

    /// Read everything, write nothing: no resend, no upload, no database change, no mailbox flag
    #[arg(long)]
    pub dry_run: bool,

    /// Run after each import with the certificate PEM on stdin (overrides deploy_hook)
    #[arg(long, value_name = "CMD")]
    pub deploy_hook: Option<String>,
}

#[derive(Debug, Args)]
pub struct PollArgs {
    /// After importing what is there, wait this long for a matching mail (e.g. 10m);
    /// exit 3 if none came
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait: Option<std::time::Duration>,

    /// Read everything, write nothing: no database change, no mailbox flag, no upload
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ResendArgs {
    /// The SoftLayer order (see `fulfill orders`)
    #[arg(long, value_name = "ID")]
    pub order: i64,

    /// Do not ask for confirmation (it is never asked when stdin is not a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Email files (.eml, RFC 5322), or - for standard input
    #[arg(required = true, value_name = "FILE.eml")]
    pub files: Vec<PathBuf>,

    /// The SoftLayer order the certificate belongs to
    #[arg(long, value_name = "ID")]
    pub order: Option<i64>,

    /// Private key (or CSR) of the certificate, in addition to [keys] dirs
    #[arg(long, value_name = "FILE")]
    pub key: Vec<PathBuf>,

    /// DNS name the certificate must cover [default: the name in the key's CSR]
    #[arg(long, value_name = "DNS")]
    pub expect_name: Option<String>,

    /// Record without uploading to the portal
    #[arg(long)]
    pub no_upload: bool,

    /// Validate and report, but write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only certificates expiring within this time (e.g. 30d, 12h), expired ones included
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub expiring_within: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Row id, or SHA-256 fingerprint (a unique prefix of 8 or more hex digits is enough)
    #[arg(value_name = "ID|SHA256")]
    pub certificate: String,

    /// Print only the certificate and its chain, in PEM
    #[arg(long)]
    pub pem: bool,
}
