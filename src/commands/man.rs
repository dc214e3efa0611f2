//! `fulfill man`: the roff manual page, fulfill(1), generated from the command line's own
//! definition (clap_mangen) plus what clap does not know: each command's options, the exit
//! codes and the files. It needs no config file or database: main.rs runs it before the
//! settings are resolved.

use std::io::{self, Write};

use clap::{Args, CommandFactory};
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use crate::cli::Cli;
use crate::exit::Exit;

#[derive(Debug, Args)]
pub struct ManArgs {}

impl ManArgs {
    pub fn execute(&self) -> anyhow::Result<Exit> {
        let page = render()?;
        let mut stdout = io::stdout().lock();
        stdout.write_all(&page)?;
        stdout.flush()?;
        Ok(Exit::Done)
    }
}

/// The whole page: clap_mangen's sections, then COMMANDS, EXIT STATUS, ENVIRONMENT and FILES.
pub fn render() -> io::Result<Vec<u8>> {
    let mut cli = Cli::command();
    cli.build();
    let man = Man::new(cli.clone()).manual("fulfill manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let mut roff = Roff::new();
    commands(&mut roff, &cli);
    exit_status(&mut roff);
    environment(&mut roff);
    files(&mut roff);
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// One subsection per command: its usage, what it does, its own options and examples.
fn commands(roff: &mut Roff, cli: &clap::Command) {
    roff.control("SH", ["COMMANDS"]);
    let shown = cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help");
    for command in shown {
        let mut command = command.clone();
        roff.control("SS", [command.get_name()]);
        roff.text([bold(
            command.render_usage().to_string().replace("Usage: ", ""),
        )]);
        let about = command.get_long_about().or_else(|| command.get_about());
        if let Some(about) = about {
            roff.control("PP", []);
            roff.text([roman(about.to_string())]);
        }
        // The global options are the OPTIONS section's; here only the command's own.
        let own = command
            .get_arguments()
            .filter(|a| !a.is_global_set() && !a.is_hide_set())
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"));
        for arg in own {
            roff.control("TP", []);
            roff.text(arg_label(arg));
            if let Some(help) = arg.get_long_help().or_else(|| arg.get_help()) {
                roff.text([roman(help.to_string())]);
            }
        }
        if let Some(examples) = command
            .get_after_long_help()
            .or_else(|| command.get_after_help())
        {
            roff.control("PP", []);
            roff.control("nf", []);
            for line in examples.to_string().lines() {
                roff.text([roman(line)]);
            }
            roff.control("fi", []);
        }
    }
}

/// `--order ID`, `-q, --quiet` or `FILE`, as a `.TP` tag.
fn arg_label(arg: &clap::Arg) -> Vec<clap_mangen::roff::Inline> {
    let mut label = Vec::new();
    let value = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map(|name| name.to_string())
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
    if let Some(short) = arg.get_short() {
        label.push(bold(format!("-{short}")));
        label.push(roman(", "));
    }
    if let Some(long) = arg.get_long() {
        label.push(bold(format!("--{long}")));
        if takes_value {
            label.push(roman(" "));
            label.push(italic(value));
        }
    } else if arg.is_positional() {
        label.push(italic(value));
    }
    label
}

fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(
        "Every command uses the same codes; a run that did several things exits with the worst.",
    )]);
    for exit in Exit::ALL {
        roff.control("TP", []);
        roff.text([bold((exit as u8).to_string())]);
        roff.text([roman(exit.meaning())]);
    }
}

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    let variables = [
        ("FULFILL_CONFIG", "the configuration file, as --config"),
        ("FULFILL_DB", "the database, as --db"),
        ("SL_USERNAME, SL_API_KEY", "the portal credentials"),
        ("SL_ENDPOINT_URL", "the portal's REST endpoint"),
        ("FULFILL_IMAP_PASSWORD", "the mailbox password"),
        (
            "IBMCLOUD_API_KEY",
            "the IBM Cloud API key for [secrets_manager]",
        ),
        (
            "XDG_CONFIG_HOME, XDG_DATA_HOME",
            "where the default configuration file and database are",
        ),
    ];
    for (name, meaning) in variables {
        roff.control("TP", []);
        roff.text([bold(name)]);
        roff.text([roman(meaning)]);
    }
}

fn files(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    let files = [
        (
            "$XDG_CONFIG_HOME/fulfill/config.toml",
            "the configuration file (--config, FULFILL_CONFIG); \
             ~/.config/fulfill/config.toml when XDG_CONFIG_HOME is not set. \
             The Debian package installs /etc/fulfill/config.toml for its service.",
        ),
        (
            "$XDG_DATA_HOME/fulfill/fulfill.db",
            "the SQLite database (--db, FULFILL_DB), created 0600 in a 0700 folder; \
             ~/.local/share/fulfill/fulfill.db when XDG_DATA_HOME is not set. \
             The Debian package's service uses /var/lib/fulfill/fulfill.db.",
        ),
        (
            "DATABASE.lock",
            "the run lock beside the database (e.g. fulfill.db.lock): one writing run at a time",
        ),
        (
            "[deploy] dir/COMMON-NAME/",
            "cert.pem, chain.pem and fullchain.pem of each deployed certificate; \
             by default live/ beside the database",
        ),
        (
            "~/.softlayer",
            "slcli's credentials, read when neither the environment nor the config has them",
        ),
    ];
    for (path, meaning) in files {
        roff.control("TP", []);
        roff.text([italic(path)]);
        roff.text([roman(meaning)]);
    }
}
