//! `fulfill deploy (ID... | --pending)`: run the deploy hook by hand, as certbot's
//! `--run-deploy-hooks` does: for the named certificates, or for every one whose hook has
//! not run or failed.

use std::io::{self, Write};

use clap::Args;
use serde::Serialize;

use super::{
    Context, Report, deploy_hook, deploy_undeployed, load_known_keys, lock_for_writing,
    with_deployments, write_deployments,
};
use crate::exit::{Exit, UsageError};
use crate::pipeline::deploy::{Deployer, Deployment};
use crate::store::Store;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["certificates", "pending"])))]
pub struct DeployArgs {
    /// Certificates to deploy: row id, or SHA-256 fingerprint (a unique prefix of 8 or
    /// more hex digits), as `list` shows them
    #[arg(value_name = "ID|SHA256")]
    pub certificates: Vec<String>,

    /// Every certificate whose deploy hook has not run yet, or failed
    #[arg(long)]
    pub pending: bool,

    /// Run this instead of deploy_hook
    #[arg(long, value_name = "CMD")]
    pub deploy_hook: Option<String>,
}

impl DeployArgs {
    pub fn execute(&self, context: &Context) -> anyhow::Result<Exit> {
        let settings = &context.settings;
        let _lock = lock_for_writing(settings, false)?;
        let hook = deploy_hook(settings, self.deploy_hook.as_deref()).ok_or_else(|| {
            UsageError(
                "no deploy hook: set deploy_hook in the config file, or pass --deploy-hook".into(),
            )
        })?;
        // Nothing recorded yet, nothing to deploy: the database is not created for that.
        let database = &settings.database;
        let store = (database.exists())
            .then(|| Store::open(database))
            .transpose()?;
        let deployments = match (&store, self.pending) {
            (store, true) => deploy_undeployed(settings, Some(&hook), store.as_ref(), context.now)?,
            (None, false) => {
                let first = self.certificates.first().map_or("", String::as_str);
                return Err(self.not_found(first, context).into());
            }
            (Some(store), false) => {
                let keys = load_known_keys(settings, &[])?;
                let deployer = Deployer {
                    hook: &hook,
                    dir: &settings.deploy_dir,
                    keys: &keys,
                };
                let mut deployments = Vec::new();
                for wanted in &self.certificates {
                    let row = (store.find_certificate(wanted)?)
                        .ok_or_else(|| self.not_found(wanted, context))?;
                    deployments.push(deployer.deploy(store, &row, context.now)?);
                }
                deployments
            }
        };
        context.output.print(&DeployReport(&deployments))?;
        Ok(with_deployments(Exit::Done, &deployments))
    }

    fn not_found(&self, wanted: &str, context: &Context) -> UsageError {
        UsageError(format!(
            "no certificate '{wanted}' in {}; `fulfill list` shows the ids",
            context.settings.database.display()
        ))
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct DeployReport<'a>(&'a [Deployment]);

impl Report for DeployReport<'_> {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.0.is_empty() {
            return writeln!(out, "Nothing to deploy: every certificate's hook has run.");
        }
        write_deployments(self.0, out)
    }

    fn is_routine(&self) -> bool {
        self.0.is_empty()
    }
}
