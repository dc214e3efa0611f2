//! `fulfill completions SHELL`: the shell's completion script, generated from the command
//! line's own definition (clap_complete), so it never lags behind a new flag. It needs no
//! config file or database: main.rs runs it before the settings are resolved.

use std::io::{self, Write};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit::Exit;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for
    #[arg(value_enum)]
    pub shell: Shell,
}

impl CompletionsArgs {
    pub fn execute(&self) -> anyhow::Result<Exit> {
        let mut out = Vec::new();
        clap_complete::generate(self.shell, &mut Cli::command(), "fulfill", &mut out);
        let mut stdout = io::stdout().lock();
        stdout.write_all(&out)?;
        stdout.flush()?;
        Ok(Exit::Done)
    }
}
