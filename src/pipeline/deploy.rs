//! The deploy hook: the user's command that puts a new certificate into service.

use std::process::Stdio;
use std::time::Duration;

use crate::child::{self, Ended, Finished};
use crate::store::CertificateRow;

#[derive(Debug, Clone)]
pub struct DeployHook {
    pub command: String,
    pub timeout: Duration,
}

impl DeployHook {
    /// `sh -c COMMAND` with the certificate and chain PEM on stdin and the facts in the
    /// environment, its output sent to our stderr (stdout is for `--json`), stopped after
    /// the timeout with everything it started (`child::run`: its process group is killed
    /// when it ends). The environment holds no secret fulfill was given (`child::shell`).
    pub fn run(&self, order_id: i64, row: &CertificateRow) -> Result<(), String> {
        let mut sh = child::shell(&self.command);
        sh.env("FULFILL_ORDER_ID", order_id.to_string())
            .env("FULFILL_COMMON_NAME", &row.common_name)
            .env("FULFILL_SHA256", &row.sha256)
            .env(
                "FULFILL_PORTAL_ID",
                row.portal_certificate_id
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(std::io::stderr())
            .stderr(Stdio::inherit());
        // A hook that does not read its input is not an error, and cannot block the write.
        let input = format!("{}{}", row.certificate_pem, row.chain_pem);
        match child::run(&mut sh, input.as_bytes(), self.timeout, 0) {
            Ok(Finished {
                ended: Ended::Exited(status),
                ..
            }) if status.success() => Ok(()),
            Ok(Finished {
                ended: Ended::Exited(status),
                ..
            }) => Err(format!("`{}` ended with {status}", self.command)),
            Ok(Finished {
                ended: Ended::Killed,
                ..
            }) => Err(format!(
                "`{}` took longer than {} and was stopped",
                self.command,
                humantime::format_duration(self.timeout)
            )),
            Err(e) => Err(format!("cannot run sh: {e}")),
        }
    }
}
