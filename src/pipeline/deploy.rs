//! The deploy hook: the user's command that puts a new certificate into service.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::child::{self, Ended};
use crate::store::CertificateRow;

#[derive(Debug, Clone)]
pub struct DeployHook {
    pub command: String,
    pub timeout: Duration,
}

impl DeployHook {
    /// `sh -c COMMAND` with the certificate and chain PEM on stdin and the facts in the
    /// environment, its output sent to our stderr (stdout is for `--json`), stopped after
    /// the timeout. The environment holds no secret fulfill was given (`child::shell`).
    pub fn run(&self, order_id: i64, row: &CertificateRow) -> Result<(), String> {
        let mut child = child::shell(&self.command)
            .env("FULFILL_ORDER_ID", order_id.to_string())
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
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start sh: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that does not read its input is not an error.
            let _ = stdin.write_all(format!("{}{}", row.certificate_pem, row.chain_pem).as_bytes());
        }
        match child::wait_at_most(&mut child, self.timeout) {
            Ok(Ended::Exited(status)) if status.success() => Ok(()),
            Ok(Ended::Exited(status)) => Err(format!("`{}` ended with {status}", self.command)),
            Ok(Ended::Killed) => Err(format!(
                "`{}` took longer than {} and was stopped",
                self.command,
                humantime::format_duration(self.timeout)
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}
