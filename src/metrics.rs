//! `[metrics] textfile`: what the database says, in the Prometheus text format (version
//! 0.0.4) that node_exporter's textfile collector reads. [`render`] is pure: rows in, text
//! out. [`write_textfile`] is the one write, atomic (a temp file beside it, then a rename)
//! so the collector never reads half a file. `commands::write_metrics` calls both after
//! every run of a command that uses the database.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::store::{
    CertificateRow, OrderRow, OrderState, RunRow, SecretRow, SecretState, Store, StoreError,
};

/// What the metrics are made of, read from the database in one go.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub certificates: Vec<CertificateRow>,
    pub orders: Vec<OrderRow>,
    pub runs: Vec<RunRow>,
    /// Certificates whose deploy hook failed (`deployments.state = 'failed'`).
    pub deploy_hook_failures: i64,
    /// Each certificate's place in Secrets Manager (`secrets_manager`).
    pub secrets: Vec<SecretRow>,
}

impl Snapshot {
    pub fn read(store: &Store) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            certificates: store.list_certificates(None)?,
            orders: store.orders()?,
            runs: store.runs()?,
            deploy_hook_failures: store.failed_deployments()?,
            secrets: store.secret_rows()?,
        })
    }
}

/// Whether an order still waits for its certificate, as far as the `orders` table knows:
/// every state but `imported` and `refused` (which `--all-pending` leaves alone). The
/// portal's own view (`pipeline::pending`) needs a network call that a metrics write
/// must not make, and orders fulfill never touched have no row.
pub fn order_is_pending(order: &OrderRow) -> bool {
    ![OrderState::Imported, OrderState::Refused]
        .iter()
        .any(|state| state.as_str() == order.state)
}

/// The text file: one gauge family per metric, with its HELP and TYPE lines. Rows whose
/// timestamps do not parse are left out rather than shown as 0.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "fulfill_certificate_not_after_timestamp_seconds",
        "When each recorded certificate expires (Unix time).",
        (snapshot.certificates.iter()).filter_map(|c| {
            let labels = [
                ("common_name", c.common_name.clone()),
                ("sha256", c.sha256.clone()),
                (
                    "portal_id",
                    c.portal_certificate_id
                        .map_or_else(String::new, |id| id.to_string()),
                ),
            ];
            Some((labels.to_vec(), unix(&c.not_after)?))
        }),
    );
    let order_labels = |o: &OrderRow| {
        vec![
            ("order_id", o.order_id.to_string()),
            ("common_name", o.common_name.clone().unwrap_or_default()),
        ]
    };
    family(
        &mut out,
        "fulfill_order_pending",
        "1 while an order in the orders table waits for its certificate (any state but imported or refused), else 0.",
        (snapshot.orders.iter()).map(|o| (order_labels(o), i64::from(order_is_pending(o)))),
    );
    family(
        &mut out,
        "fulfill_order_last_resend_timestamp_seconds",
        "When the fulfillment email of an order was last asked for again (Unix time).",
        (snapshot.orders.iter())
            .filter_map(|o| Some((order_labels(o), unix(o.resend_requested_at.as_deref()?)?))),
    );
    let run_labels = |r: &RunRow| vec![("command", r.command.clone())];
    family(
        &mut out,
        "fulfill_last_run_timestamp_seconds",
        "When each command last finished (Unix time).",
        (snapshot.runs.iter()).filter_map(|r| Some((run_labels(r), unix(&r.finished_at)?))),
    );
    family(
        &mut out,
        "fulfill_last_run_exit_code",
        "The exit code of each command's last run (0 done, 1 failure, 4 rejected, 75 locked...).",
        (snapshot.runs.iter()).map(|r| (run_labels(r), r.exit_code)),
    );
    family(
        &mut out,
        "fulfill_deploy_hook_failures",
        "Recorded certificates whose deploy hook failed the last time it ran.",
        [(Vec::new(), snapshot.deploy_hook_failures)],
    );
    secrets_manager(&mut out, snapshot);
    out
}

/// The Secrets Manager families: each stored certificate's secret and version, and how
/// many imports failed the last time they ran.
fn secrets_manager(out: &mut String, snapshot: &Snapshot) {
    let stored = SecretState::Stored.as_str();
    family(
        out,
        "fulfill_certificate_secrets_manager_version",
        "The Secrets Manager secret version that holds each stored certificate.",
        (snapshot.secrets.iter())
            .filter(|s| s.state == stored)
            .filter_map(|s| {
                let certificate =
                    (snapshot.certificates.iter()).find(|c| c.id == s.certificate_id)?;
                let labels = vec![
                    ("common_name", certificate.common_name.clone()),
                    ("sha256", certificate.sha256.clone()),
                    ("secret_name", s.secret_name.clone()),
                    ("secret_id", s.secret_id.clone().unwrap_or_default()),
                    (
                        "version_id",
                        s.secret_version_id.clone().unwrap_or_default(),
                    ),
                ];
                Some((labels, s.secret_version.unwrap_or(0)))
            }),
    );
    let failed = SecretState::Failed.as_str();
    family(
        out,
        "fulfill_secrets_manager_failures",
        "Recorded certificates whose import into Secrets Manager failed the last time it ran.",
        [(
            Vec::new(),
            (snapshot.secrets.iter())
                .filter(|s| s.state == failed)
                .count() as i64,
        )],
    );
}

type Labels = Vec<(&'static str, String)>;

fn family(
    out: &mut String,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, i64)>,
) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, value) in samples {
        let labels: Vec<String> = (labels.iter())
            .map(|(label, value)| format!("{label}=\"{}\"", escape_label_value(value)))
            .collect();
        let _ = match labels.is_empty() {
            true => writeln!(out, "{name} {value}"),
            false => writeln!(out, "{name}{{{}}} {value}", labels.join(",")),
        };
    }
}

/// A label value as the text format writes it: backslash, double quote and line feed
/// escaped (`\\`, `\"`, `\n`); everything else as it is (UTF-8).
pub fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn unix(rfc3339: &str) -> Option<i64> {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// Writes `text` to `path` atomically, mode 0644 (the collector runs as another user): a
/// temp file in the same folder, synced, then renamed over `path`. The temp name does not
/// end in `.prom`, so the collector never reads it.
pub fn write_textfile(path: &Path, text: &str) -> io::Result<()> {
    let name = (path.file_name())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let temp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A temp file left by a crashed run with the same pid, or a link someone put there.
    let _ = fs::remove_file(&temp);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        // The umask may have taken bits away.
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(order_id: i64, state: OrderState, resend: Option<&str>) -> OrderRow {
        OrderRow {
            order_id,
            common_name: Some("www.example.com".into()),
            state: state.as_str().into(),
            resend_requested_at: resend.map(str::to_string),
            resend_attempts: 0,
            last_error: None,
            updated_at: "2025-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            escape_label_value("a\\b\"c\nd é"),
            "a\\\\b\\\"c\\nd é".to_string()
        );
    }

    #[test]
    fn renders_every_family_with_its_values() {
        let snapshot = Snapshot {
            certificates: Vec::new(),
            orders: vec![
                order(7, OrderState::WaitingForMail, Some("1970-01-01T00:01:40Z")),
                order(8, OrderState::Imported, None),
                order(9, OrderState::Refused, None),
            ],
            runs: vec![RunRow {
                command: "poll".into(),
                finished_at: "1970-01-01T00:00:10Z".into(),
                exit_code: 4,
            }],
            deploy_hook_failures: 2,
            secrets: Vec::new(),
        };
        let text = render(&snapshot);
        for line in [
            "# TYPE fulfill_certificate_not_after_timestamp_seconds gauge",
            "fulfill_order_pending{order_id=\"7\",common_name=\"www.example.com\"} 1",
            "fulfill_order_pending{order_id=\"8\",common_name=\"www.example.com\"} 0",
            "fulfill_order_pending{order_id=\"9\",common_name=\"www.example.com\"} 0",
            "fulfill_order_last_resend_timestamp_seconds{order_id=\"7\",common_name=\"www.example.com\"} 100",
            "fulfill_last_run_timestamp_seconds{command=\"poll\"} 10",
            "fulfill_last_run_exit_code{command=\"poll\"} 4",
            "fulfill_deploy_hook_failures 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("last_resend_timestamp_seconds{order_id=\"8\""));
    }

    #[test]
    fn the_file_is_replaced_whole_and_readable_by_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fulfill.prom");
        write_textfile(&path, "old\n").unwrap();
        write_textfile(&path, "new\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
