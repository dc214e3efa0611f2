//! The SQLite record a person can review with the `sqlite3` shell.
//!
//! Timestamps are RFC 3339 UTC text and fingerprints lowercase hex (design, "SQLite").
//! The file is created 0600 in a 0700 folder before SQLite opens it, so certificates'
//! provenance is never readable by other users; it runs in WAL mode so a reader (`list`
//! from a terminal) never blocks a cron run.

mod lock;
mod migrations;
mod replacements;
mod secrets_manager;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use self::lock::{LockError, RunLock};
use self::migrations::MIGRATIONS;
pub use self::replacements::{NewReplacement, ReplaceState, ReplacedCertificate, ReplacementRow};
pub use self::secrets_manager::{SecretPlace, SecretRow, SecretState};
use crate::text::printable;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the database folder {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot create the database file {path}: {source}")]
    CreateFile { path: PathBuf, source: io::Error },
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the database {path} has schema version {found}, newer than this fulfill knows ({known}); \
         use a newer fulfill"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("database {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("'{0}' matches more than one certificate; give more of the SHA-256")]
    Ambiguous(String),
    #[error(
        "'{0}' is too short for a SHA-256 prefix: a prefix needs 8 or more hex digits (or give the row id or the common name)"
    )]
    PrefixTooShort(String),
}

impl StoreError {
    /// How the certificate was named is the mistake (ambiguous, too short), not the database.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            StoreError::Ambiguous(_) | StoreError::PrefixTooShort(_)
        )
    }
}

/// A certificate about to be recorded.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    pub order_id: Option<i64>,
    pub common_name: String,
    pub subject_alt_names: Vec<String>,
    pub serial: String,
    pub sha256: String,
    pub issuer: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub certificate_pem: String,
    pub chain_pem: String,
    pub key_source: Option<String>,
    pub source_message_id: Option<String>,
    pub source: Option<String>,
    /// Whether a deploy hook is to run for it: its `deployments` row is written pending in
    /// the same transaction as the certificate, so a crash before the hook loses nothing.
    pub deploy: bool,
}

/// Where the deploy hook is with a certificate (`deployments.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployState {
    Pending,
    Done,
    /// The hook failed; the next run tries again.
    Failed,
}

impl DeployState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Pending => "pending",
            DeployState::Done => "done",
            DeployState::Failed => "failed",
        }
    }
}

/// A row of `certificates`. Serialised with the column names, for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateRow {
    pub id: i64,
    pub order_id: Option<i64>,
    pub common_name: String,
    pub subject_alt_names: Vec<String>,
    pub serial: String,
    pub sha256: String,
    pub issuer: String,
    pub not_before: String,
    pub not_after: String,
    pub certificate_pem: String,
    pub chain_pem: String,
    pub key_source: Option<String>,
    pub portal_certificate_id: Option<i64>,
    pub source_message_id: Option<String>,
    pub source: Option<String>,
    pub imported_at: String,
}

/// A row of `events`.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: String,
    pub order_id: Option<i64>,
    pub kind: String,
    pub detail: String,
}

/// Where fulfill is with a portal order, as the `orders` table stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// The resend time is committed; `resendEmail` is being (or was) called. After a call
    /// that got no definite answer it stays here, the error in `last_error`: the CA may be
    /// mailing, so the cooldown holds.
    ResendRequested,
    /// Resent, but no mail with the certificate came within the run's timeout.
    WaitingForMail,
    Imported,
    /// The portal refused `resendEmail`.
    ResendFailed,
    /// Recorded locally, but the upload to the portal failed; the next run retries.
    UploadFailed,
    /// The API refused `resendEmail` outright (a `SoftLayer_Exception_*`, such as a retired
    /// product): `--all-pending` leaves the order alone until it is named with `--order`.
    Refused,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::ResendRequested => "resend_requested",
            OrderState::WaitingForMail => "waiting_for_mail",
            OrderState::Imported => "imported",
            OrderState::ResendFailed => "resend_failed",
            OrderState::UploadFailed => "upload_failed",
            OrderState::Refused => "refused",
        }
    }
}

/// A row of `orders`: fulfill's own view of a portal order's progress.
#[derive(Debug, Clone, Serialize)]
pub struct OrderRow {
    pub order_id: i64,
    pub common_name: Option<String>,
    /// [`OrderState::as_str`] as stored (kept as text: a newer fulfill may store a state
    /// this one does not know).
    pub state: String,
    pub resend_requested_at: Option<String>,
    /// Resends in a row that brought no mail yet (0 once the certificate is in).
    pub resend_attempts: i64,
    pub last_error: Option<String>,
    pub updated_at: String,
}

const ORDER_COLUMNS: &str = "order_id, common_name, state, resend_requested_at, resend_attempts, \
     last_error, updated_at";

fn order_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OrderRow> {
    Ok(OrderRow {
        order_id: r.get(0)?,
        common_name: r.get(1)?,
        state: r.get(2)?,
        resend_requested_at: r.get(3)?,
        resend_attempts: r.get(4)?,
        last_error: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

/// A row of `runs`: how a command's last run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    pub command: String,
    pub finished_at: String,
    pub exit_code: i64,
}

/// A message's place in a mailbox folder: recording what was learnt from it moves the
/// folder's `last_uid` to it in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxPosition {
    /// "user@host:port", so two accounts on one server keep apart.
    pub account: String,
    pub folder: String,
    pub uidvalidity: u32,
    pub uid: u32,
    /// The `after_import` a recorded certificate asks for ("flag", "move:Imported"), if
    /// any: recording the certificate records the mark as pending in the same transaction,
    /// so the position never passes a mail that is neither marked nor pending.
    pub mark: Option<String>,
}

/// A row of `pending_marks`: a mail whose certificate is recorded but whose
/// `after_import` is not applied yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMark {
    pub uidvalidity: u32,
    pub uid: u32,
    /// The `after_import` it was recorded with.
    pub action: String,
    pub last_error: Option<String>,
}

/// A row of `mailbox_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxState {
    pub uidvalidity: u32,
    pub last_uid: u32,
}

/// Moves a folder's position forward (never back, within one UIDVALIDITY); a new
/// UIDVALIDITY replaces the old state.
const ADVANCE_MAILBOX: &str =
    "INSERT INTO mailbox_state (account, folder, uidvalidity, last_uid, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (account, folder) DO UPDATE SET
         last_uid = CASE WHEN uidvalidity = excluded.uidvalidity
                         THEN max(last_uid, excluded.last_uid) ELSE excluded.last_uid END,
         uidvalidity = excluded.uidvalidity,
         updated_at = excluded.updated_at";

fn advance(
    tx: &rusqlite::Connection,
    position: &MailboxPosition,
    now: OffsetDateTime,
) -> rusqlite::Result<usize> {
    tx.execute(
        ADVANCE_MAILBOX,
        params![
            position.account,
            position.folder,
            position.uidvalidity,
            position.uid,
            timestamp(now)
        ],
    )
}

/// What a batch of mails taught, written in one transaction by [`Store::commit_batch`]:
/// the events of the mails that recorded nothing themselves, and the mailbox position
/// past the last mail of the batch. A run that dies before the commit reads the batch again.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MailBatch {
    events: Vec<BatchEvent>,
    position: Option<MailboxPosition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BatchEvent {
    order_id: Option<i64>,
    kind: String,
    detail: String,
}

impl MailBatch {
    /// An event, and (with a position) the position moved past its mail, at the commit.
    pub fn event(
        &mut self,
        order_id: Option<i64>,
        kind: &str,
        detail: &str,
        position: Option<&MailboxPosition>,
    ) {
        self.events.push(BatchEvent {
            order_id,
            kind: kind.to_string(),
            detail: detail.to_string(),
        });
        if let Some(position) = position {
            self.advance(position);
        }
    }

    /// The position moved past a mail, at the commit.
    pub fn advance(&mut self, position: &MailboxPosition) {
        let further = self
            .position
            .as_ref()
            .is_none_or(|p| p.uidvalidity != position.uidvalidity || p.uid < position.uid);
        if further {
            self.position = Some(position.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.position.is_none()
    }
}

/// What recording a certificate did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New(i64),
    /// The same certificate (same SHA-256) was already there: nothing was written but the event.
    AlreadyThere(i64),
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// RFC 3339, UTC, whole seconds: sorts as text, reads well in the sqlite3 shell.
/// An event about a recorded certificate, tied to its order (if it has one), in `tx`: the
/// one way the deploy hook, Secrets Manager and listener moves write theirs.
fn certificate_event(
    tx: &rusqlite::Transaction<'_>,
    certificate_id: i64,
    kind: &str,
    detail: &str,
    at: &str,
) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO events (at, order_id, kind, detail)
         SELECT ?1, order_id, ?2, ?3 FROM certificates WHERE id = ?4",
        params![at, kind, printable(detail), certificate_id],
    )
}

pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

const CERTIFICATE_COLUMNS: &str = "id, order_id, common_name, subject_alt_names, serial, sha256, issuer, \
     not_before, not_after, certificate_pem, chain_pem, key_source, portal_certificate_id, \
     source_message_id, source, imported_at";

fn certificate_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CertificateRow> {
    let names: String = row.get(3)?;
    Ok(CertificateRow {
        id: row.get(0)?,
        order_id: row.get(1)?,
        common_name: row.get(2)?,
        subject_alt_names: names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect(),
        serial: row.get(4)?,
        sha256: row.get(5)?,
        issuer: row.get(6)?,
        not_before: row.get(7)?,
        not_after: row.get(8)?,
        certificate_pem: row.get(9)?,
        chain_pem: row.get(10)?,
        key_source: row.get(11)?,
        portal_certificate_id: row.get(12)?,
        source_message_id: row.get(13)?,
        source: row.get(14)?,
        imported_at: row.get(15)?,
    })
}

/// Creates the folder that will hold `path`, readable by its owner only (0700), when it
/// does not exist yet; an existing folder is left as the user made it.
pub(crate) fn create_private_folder_for(path: &Path) -> std::io::Result<()> {
    match path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty() && !dir.exists())
    {
        Some(dir) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
        None => Ok(()),
    }
}

/// fulfill creates the database 0600 in a 0700 folder; one made or changed by hand that
/// group or others can read shows certificates' provenance and the audit trail to them.
/// It still works (the user may mean it), but says how to close it.
fn warn_if_readable_by_others(database: &Path) {
    let folder = database.parent().filter(|f| !f.as_os_str().is_empty());
    for (path, private) in [(Some(database), "600"), (folder, "700")] {
        let Some(mode) = path
            .and_then(|p| fs::metadata(p).ok())
            .map(|m| m.mode() & 0o777)
        else {
            continue;
        };
        if let Some(path) = path.filter(|_| mode & 0o077 != 0) {
            log::warn!(
                "{} can be read by other users (mode {mode:o}); run `chmod {private} {}`",
                crate::text::printable(&path.display().to_string()),
                crate::text::printable(&path.display().to_string())
            );
        }
    }
}

/// Inserts a new certificate, its pending deployment when a hook is configured, and the
/// event that says so, in the caller's transaction; returns its row id.
fn insert_certificate(
    tx: &rusqlite::Transaction<'_>,
    cert: &NewCertificate,
    at: &str,
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO certificates (order_id, common_name, subject_alt_names, serial, sha256, issuer,
             not_before, not_after, certificate_pem, chain_pem, key_source, source_message_id,
             source, imported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            cert.order_id,
            cert.common_name,
            cert.subject_alt_names.join(", "),
            cert.serial,
            cert.sha256,
            cert.issuer,
            timestamp(cert.not_before),
            timestamp(cert.not_after),
            cert.certificate_pem,
            cert.chain_pem,
            cert.key_source,
            cert.source_message_id,
            cert.source,
            at,
        ],
    )?;
    let id = tx.last_insert_rowid();
    if cert.deploy {
        tx.execute(
            "INSERT INTO deployments (certificate_id, state, updated_at) VALUES (?1, ?2, ?3)",
            params![id, DeployState::Pending.as_str(), at],
        )?;
    }
    tx.execute(
        "INSERT INTO events (at, order_id, kind, detail) VALUES (?1, ?2, 'certificate_recorded', ?3)",
        params![
            at,
            cert.order_id,
            printable(&format!(
                "certificate #{id} {} sha256 {} from {}",
                cert.common_name,
                cert.sha256,
                cert.source.as_deref().unwrap_or("?")
            ))
        ],
    )?;
    Ok(id)
}

impl Store {
    /// Opens the database, creating it (0600, folder 0700) and migrating it as needed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        create_private_folder_for(path).map_err(|source| StoreError::CreateDir {
            path: path.parent().unwrap_or(path).to_path_buf(),
            source,
        })?;
        if !path.exists() {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .or_else(|e| match e.kind() {
                    // Another run created it between our check and our open: fine.
                    io::ErrorKind::AlreadyExists => fs::File::open(path),
                    _ => Err(e),
                })
                .map_err(|source| StoreError::CreateFile {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        warn_if_readable_by_others(path);
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing database without writing to it (for `--dry-run`); `None` if the
    /// file does not exist, since a dry run must not create it.
    pub fn open_read_only(path: &Path) -> Result<Option<Store>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        warn_if_readable_by_others(path);
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            },
        )?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        let version = store.schema_version()?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                path: store.path.clone(),
                found: version,
                known: MIGRATIONS.len() as i64,
            });
        }
        Ok(Some(store))
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    fn configure(&self) -> Result<(), StoreError> {
        // A cron run and a person's `list` may meet: wait for each other briefly
        // rather than fail with "database is locked".
        self.conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(self.sql())?;
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(self.sql())?;
        self.conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(self.sql())?;
        Ok(())
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(self.sql())
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version = self.schema_version()?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known,
            });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let path = self.path.clone();
            let sql = |source| StoreError::Sql {
                path: path.clone(),
                source,
            };
            let tx = self.conn.transaction().map_err(sql)?;
            tx.execute_batch(migration).map_err(sql)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)
                .map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a certificate and its event in one transaction. The same certificate
    /// (by SHA-256) again is a no-op that says so.
    pub fn record_certificate(
        &mut self,
        cert: &NewCertificate,
        position: Option<&MailboxPosition>,
        now: OffsetDateTime,
    ) -> Result<Recorded, StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM certificates WHERE sha256 = ?1",
                [&cert.sha256],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        let at = timestamp(now);
        let recorded = match existing {
            Some(id) => {
                tx.execute(
                    "INSERT INTO events (at, order_id, kind, detail) VALUES (?1, ?2, 'certificate_already_recorded', ?3)",
                    params![at, cert.order_id, printable(&format!(
                        "{} sha256 {} from {} is already certificate #{id}",
                        cert.common_name,
                        cert.sha256,
                        cert.source.as_deref().unwrap_or("?")
                    ))],
                )
                .map_err(sql)?;
                Recorded::AlreadyThere(id)
            }
            None => Recorded::New(insert_certificate(&tx, cert, &at).map_err(sql)?),
        };
        if let Some(position) = position {
            advance(&tx, position, now).map_err(sql)?;
            if let Some(action) = &position.mark {
                tx.execute(
                    "INSERT INTO pending_marks
                         (account, folder, uidvalidity, uid, action, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                     ON CONFLICT DO NOTHING",
                    params![
                        position.account,
                        position.folder,
                        position.uidvalidity,
                        position.uid,
                        action,
                        at
                    ],
                )
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(recorded)
    }

    /// The marks still to apply in one folder, oldest UID first.
    pub fn pending_marks(
        &self,
        account: &str,
        folder: &str,
    ) -> Result<Vec<PendingMark>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT uidvalidity, uid, action, last_error FROM pending_marks
                 WHERE account = ?1 AND folder = ?2 ORDER BY uidvalidity, uid",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([account, folder], |r| {
                Ok(PendingMark {
                    uidvalidity: r.get(0)?,
                    uid: r.get(1)?,
                    action: r.get(2)?,
                    last_error: r.get(3)?,
                })
            })
            .map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    /// The mark of this mail is applied, or no longer to be applied: the row goes, and
    /// `event` (kind, detail), if any, is recorded with it.
    pub fn clear_pending_mark(
        &self,
        position: &MailboxPosition,
        event: Option<(&str, &str)>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.unchecked_transaction().map_err(sql)?;
        tx.execute(
            "DELETE FROM pending_marks
             WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4",
            params![
                position.account,
                position.folder,
                position.uidvalidity,
                position.uid
            ],
        )
        .map_err(sql)?;
        if let Some((kind, detail)) = event {
            tx.execute(
                "INSERT INTO events (at, order_id, kind, detail) VALUES (?1, NULL, ?2, ?3)",
                params![timestamp(now), kind, printable(detail)],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    /// Applying the mark of this mail failed: it stays pending with the error. A
    /// `mark_failed` event is recorded for its first failure, not at every retry (a cron
    /// run every few minutes would fill the table). Returns whether it was.
    pub fn pending_mark_failed(
        &self,
        position: &MailboxPosition,
        action: &str,
        error: &str,
        detail: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let error = printable(error);
        let at = timestamp(now);
        let tx = self.conn.unchecked_transaction().map_err(sql)?;
        let before: Option<Option<String>> = tx
            .query_row(
                "SELECT last_error FROM pending_marks
                 WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4",
                params![
                    position.account,
                    position.folder,
                    position.uidvalidity,
                    position.uid
                ],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        tx.execute(
            "INSERT INTO pending_marks
                 (account, folder, uidvalidity, uid, action, last_error, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT (account, folder, uidvalidity, uid) DO UPDATE SET
                 last_error = excluded.last_error,
                 updated_at = excluded.updated_at",
            params![
                position.account,
                position.folder,
                position.uidvalidity,
                position.uid,
                action,
                error,
                at
            ],
        )
        .map_err(sql)?;
        // Servers put the time in some messages ("Internal error occurred ... [2026-...]"),
        // so the same failure rarely reads the same twice: only the first one is an event.
        let new = before.flatten().is_none();
        if new {
            tx.execute(
                "INSERT INTO events (at, order_id, kind, detail) VALUES (?1, NULL, 'mark_failed', ?2)",
                params![at, printable(detail)],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        Ok(new)
    }

    /// Ties certificate `id` to `order_id` when it was recorded without an order (imported
    /// with no portal to say whose it was), with an event; a no-op otherwise.
    pub fn link_order(
        &self,
        id: i64,
        order_id: i64,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE certificates SET order_id = ?2 WHERE id = ?1 AND order_id IS NULL",
                params![id, order_id],
            )
            .map_err(self.sql())?;
        if changed == 1 {
            let detail =
                format!("certificate #{id} is the one of order {order_id} (its CSR's key)");
            self.add_event(Some(order_id), "certificate_linked_to_order", &detail, now)?;
        }
        Ok(())
    }

    /// Notes that the portal store holds certificate `id` as `portal_id`.
    pub fn set_portal_certificate_id(
        &self,
        id: i64,
        portal_id: i64,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.unchecked_transaction().map_err(sql)?;
        tx.execute(
            "UPDATE certificates SET portal_certificate_id = ?2 WHERE id = ?1",
            params![id, portal_id],
        )
        .map_err(sql)?;
        let (order_id, common_name): (Option<i64>, String) = tx
            .query_row(
                "SELECT order_id, common_name FROM certificates WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql)?;
        tx.execute(
            "INSERT INTO events (at, order_id, kind, detail) VALUES (?1, ?2, 'certificate_uploaded', ?3)",
            params![
                timestamp(now),
                order_id,
                printable(&format!(
                    "certificate #{id} {common_name} is portal certificate {portal_id}"
                ))
            ],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// Records an order's state (and when a resend was asked for, if it was), with an event.
    pub fn update_order(
        &self,
        order_id: i64,
        common_name: Option<&str>,
        state: OrderState,
        resend_requested_at: Option<OffsetDateTime>,
        last_error: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let state = state.as_str();
        // The error is the portal's or a server's text: stored printable, like every event.
        let last_error = last_error.map(printable);
        let tx = self.conn.unchecked_transaction().map_err(sql)?;
        tx.execute(
            "INSERT INTO orders (order_id, common_name, state, resend_requested_at, resend_attempts,
                                 last_error, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4 IS NOT NULL, ?5, ?6)
             ON CONFLICT (order_id) DO UPDATE SET
                 common_name = coalesce(excluded.common_name, common_name),
                 state = excluded.state,
                 resend_requested_at = coalesce(excluded.resend_requested_at, resend_requested_at),
                 resend_attempts = CASE
                     WHEN excluded.resend_requested_at IS NOT NULL THEN resend_attempts + 1
                     WHEN excluded.state = 'imported' THEN 0
                     ELSE resend_attempts END,
                 last_error = excluded.last_error,
                 updated_at = excluded.updated_at",
            params![
                order_id,
                common_name,
                state,
                resend_requested_at.map(timestamp),
                last_error.as_deref(),
                timestamp(now)
            ],
        )
        .map_err(sql)?;
        let detail = match &last_error {
            Some(error) => format!("order {order_id} is {state}: {error}"),
            None => format!("order {order_id} is {state}"),
        };
        tx.execute(
            "INSERT INTO events (at, order_id, kind, detail) VALUES (?1, ?2, 'order_state', ?3)",
            params![timestamp(now), order_id, detail],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// The portal refused a resend that [`Store::update_order`] had recorded as requested:
    /// no mail is on its way, so the cooldown must not hold the next run back. Only for a
    /// definite refusal: a resend whose outcome is unknown keeps its time.
    pub fn resend_refused(
        &self,
        order_id: i64,
        common_name: Option<&str>,
        state: OrderState,
        error: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE orders SET resend_requested_at = NULL,
                                   resend_attempts = max(resend_attempts - 1, 0)
                 WHERE order_id = ?1",
                [order_id],
            )
            .map_err(self.sql())?;
        self.update_order(order_id, common_name, state, None, Some(error), now)
    }

    pub fn order(&self, order_id: i64) -> Result<Option<OrderRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ?1"),
                [order_id],
                order_row,
            )
            .optional()
            .map_err(self.sql())
    }

    /// Every row of `orders`, by order id.
    pub fn orders(&self) -> Result<Vec<OrderRow>, StoreError> {
        let mut statement = (self.conn)
            .prepare(&format!(
                "SELECT {ORDER_COLUMNS} FROM orders ORDER BY order_id"
            ))
            .map_err(self.sql())?;
        let rows = statement.query_map([], order_row).map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    /// Records how a command's run ended (`runs`, one row per command: the last run).
    pub fn record_run(
        &self,
        command: &str,
        exit_code: i64,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (command, finished_at, exit_code) VALUES (?1, ?2, ?3)
                 ON CONFLICT (command) DO UPDATE SET
                     finished_at = excluded.finished_at, exit_code = excluded.exit_code",
                params![command, timestamp(now), exit_code],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// The last run of every command that recorded one, by command name.
    pub fn runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let mut statement = (self.conn)
            .prepare("SELECT command, finished_at, exit_code FROM runs ORDER BY command")
            .map_err(self.sql())?;
        let rows = statement
            .query_map([], |r| {
                Ok(RunRow {
                    command: r.get(0)?,
                    finished_at: r.get(1)?,
                    exit_code: r.get(2)?,
                })
            })
            .map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    /// How many certificates' deploy hook failed last time it ran.
    pub fn failed_deployments(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM deployments WHERE state = ?1",
                [DeployState::Failed.as_str()],
                |r| r.get(0),
            )
            .map_err(self.sql())
    }

    /// The certificates whose deploy hook has not run, or failed: every run retries them.
    pub fn undeployed_certificates(&self) -> Result<Vec<CertificateRow>, StoreError> {
        let mut statement = self
            .conn
            .prepare(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates
                 WHERE id IN (SELECT certificate_id FROM deployments WHERE state != 'done')
                 ORDER BY id"
            ))
            .map_err(self.sql())?;
        statement
            .query_map([], certificate_row)
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())
    }

    /// Records what the deploy hook did with a certificate, with an event.
    pub fn set_deployment(
        &self,
        certificate_id: i64,
        result: Result<(), &str>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (state, error) = match result {
            Ok(()) => (DeployState::Done, None),
            Err(error) => (DeployState::Failed, Some(printable(error).into_owned())),
        };
        let at = timestamp(now);
        let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
        tx.execute(
            "INSERT INTO deployments (certificate_id, state, attempts, done_at, last_error, updated_at)
             VALUES (?1, ?2, 1, CASE WHEN ?2 = 'done' THEN ?4 END, ?3, ?4)
             ON CONFLICT (certificate_id) DO UPDATE SET
                 state = excluded.state,
                 attempts = attempts + 1,
                 done_at = coalesce(excluded.done_at, done_at),
                 last_error = excluded.last_error,
                 updated_at = excluded.updated_at",
            params![certificate_id, state.as_str(), error, at],
        )
        .map_err(self.sql())?;
        let (kind, detail) = match &error {
            None => (
                "deploy_hook_ran",
                format!("certificate #{certificate_id}: deploy hook ok"),
            ),
            Some(error) => (
                "deploy_hook_failed",
                format!("certificate #{certificate_id}: deploy hook failed: {error}"),
            ),
        };
        certificate_event(&tx, certificate_id, kind, &detail, &at).map_err(self.sql())?;
        tx.commit().map_err(self.sql())
    }

    /// Appends one step to the audit trail.
    pub fn add_event(
        &self,
        order_id: Option<i64>,
        kind: &str,
        detail: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.add_event_at(order_id, kind, detail, None, now)
    }

    /// An event, and the mailbox position moved past the message it is about, together.
    pub fn add_event_at(
        &self,
        order_id: Option<i64>,
        kind: &str,
        detail: &str,
        position: Option<&MailboxPosition>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.unchecked_transaction().map_err(sql)?;
        tx.execute(
            "INSERT INTO events (at, order_id, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            params![timestamp(now), order_id, kind, printable(detail)],
        )
        .map_err(sql)?;
        if let Some(position) = position {
            advance(&tx, position, now).map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    /// Writes a batch in one transaction and empties it.
    pub fn commit_batch(
        &self,
        batch: &mut MailBatch,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let sql = self.sql();
        let tx = self.conn.unchecked_transaction().map_err(&sql)?;
        for event in &batch.events {
            tx.execute(
                "INSERT INTO events (at, order_id, kind, detail) VALUES (?1, ?2, ?3, ?4)",
                params![
                    timestamp(now),
                    event.order_id,
                    event.kind,
                    printable(&event.detail)
                ],
            )
            .map_err(&sql)?;
        }
        if let Some(position) = &batch.position {
            advance(&tx, position, now).map_err(&sql)?;
        }
        tx.commit().map_err(&sql)?;
        *batch = MailBatch::default();
        Ok(())
    }

    /// Moves the mailbox position past a message that taught nothing worth an event.
    pub fn advance_mailbox(
        &self,
        position: &MailboxPosition,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        advance(&self.conn, position, now)
            .map(|_| ())
            .map_err(self.sql())
    }

    pub fn mailbox_state(
        &self,
        account: &str,
        folder: &str,
    ) -> Result<Option<MailboxState>, StoreError> {
        self.conn
            .query_row(
                "SELECT uidvalidity, last_uid FROM mailbox_state WHERE account = ?1 AND folder = ?2",
                [account, folder],
                |r| {
                    Ok(MailboxState {
                        uidvalidity: r.get(0)?,
                        last_uid: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(self.sql())
    }

    pub fn events(&self) -> Result<Vec<EventRow>, StoreError> {
        self.events_where(None, None)
    }

    /// The audit trail, oldest first: only one order's events, and only those at or after
    /// `since`, when given.
    pub fn events_where(
        &self,
        order_id: Option<i64>,
        since: Option<OffsetDateTime>,
    ) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, at, order_id, kind, detail FROM events \
                 WHERE (?1 IS NULL OR order_id = ?1) AND (?2 IS NULL OR at >= ?2) ORDER BY id",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map(params![order_id, since.map(timestamp)], |r| {
                Ok(EventRow {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    order_id: r.get(2)?,
                    kind: r.get(3)?,
                    detail: r.get(4)?,
                })
            })
            .map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    pub fn certificate_by_sha256(
        &self,
        sha256: &str,
    ) -> Result<Option<CertificateRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE sha256 = ?1"),
                [sha256],
                certificate_row,
            )
            .optional()
            .map_err(self.sql())
    }

    /// A certificate by row id, by SHA-256 or a unique prefix of it (at least 8 hex digits,
    /// colons allowed as `openssl x509 -fingerprint` prints them), or by common name (the
    /// newest: the latest not_after, then the highest id). A shorter hex prefix that names
    /// nothing else is an error that says a prefix needs 8 digits.
    pub fn find_certificate(
        &self,
        id_or_sha256: &str,
    ) -> Result<Option<CertificateRow>, StoreError> {
        if let Ok(id) = id_or_sha256.parse::<i64>() {
            let by_id = self
                .conn
                .query_row(
                    &format!("SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE id = ?1"),
                    [id],
                    certificate_row,
                )
                .optional()
                .map_err(self.sql())?;
            if by_id.is_some() || id_or_sha256.len() < 8 {
                return Ok(by_id);
            }
        }
        let prefix = id_or_sha256.replace(':', "").to_ascii_lowercase();
        let hex = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex || prefix.len() < 8 {
            return match self.newest_named(id_or_sha256)? {
                Some(row) => Ok(Some(row)),
                None if hex && id_or_sha256.parse::<i64>().is_err() => {
                    Err(StoreError::PrefixTooShort(id_or_sha256.to_string()))
                }
                None => Ok(None),
            };
        }
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE substr(sha256, 1, ?2) = ?1 LIMIT 2"
            ))
            .map_err(self.sql())?;
        let mut rows: Vec<CertificateRow> = stmt
            .query_map(params![prefix, prefix.len() as i64], certificate_row)
            .map_err(self.sql())?
            .collect::<Result<_, _>>()
            .map_err(self.sql())?;
        match rows.len() {
            0 => self.newest_named(id_or_sha256),
            1 => Ok(rows.pop()),
            _ => Err(StoreError::Ambiguous(id_or_sha256.to_string())),
        }
    }

    /// The newest certificate for a common name (DNS names compare without case).
    fn newest_named(&self, common_name: &str) -> Result<Option<CertificateRow>, StoreError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE common_name = ?1 COLLATE NOCASE \
                     ORDER BY not_after DESC, id DESC LIMIT 1"
                ),
                [common_name],
                certificate_row,
            )
            .optional()
            .map_err(self.sql())
    }

    /// Certificates by expiry, soonest first; only those expiring before `until` if given.
    pub fn list_certificates(
        &self,
        until: Option<OffsetDateTime>,
    ) -> Result<Vec<CertificateRow>, StoreError> {
        let until = until.map(timestamp).unwrap_or_else(|| "9999".into());
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE not_after <= ?1 ORDER BY not_after, id"
            ))
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([until], certificate_row)
            .map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(sha256: &str) -> NewCertificate {
        NewCertificate {
            order_id: None,
            common_name: "www.example.com".into(),
            subject_alt_names: vec!["www.example.com".into()],
            serial: "01".into(),
            sha256: sha256.into(),
            issuer: "CN=Test CA".into(),
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH,
            certificate_pem: String::new(),
            chain_pem: String::new(),
            key_source: None,
            source_message_id: None,
            source: Some("imap://a/INBOX;UIDVALIDITY=9;UID=4".into()),
            deploy: false,
        }
    }

    fn position(uid: u32, mark: Option<&str>) -> MailboxPosition {
        MailboxPosition {
            account: "a".into(),
            folder: "INBOX".into(),
            uidvalidity: 9,
            uid,
            mark: mark.map(str::to_string),
        }
    }

    fn events(store: &Store, kind: &str) -> usize {
        (store.events().unwrap().iter())
            .filter(|e| e.kind == kind)
            .count()
    }

    /// `show NAME` is the newest certificate for it (latest not_after, then highest id); a
    /// hex prefix under 8 digits that names nothing says a prefix needs 8.
    #[test]
    fn certificates_are_found_by_common_name_and_short_prefixes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("f.db")).unwrap();
        let now = OffsetDateTime::UNIX_EPOCH;
        let day = time::Duration::days(1);
        for (sha256, not_after) in [("aa01", 30), ("bb02", 90), ("cc03", 90), ("dd04", 60)] {
            let mut cert = certificate(sha256);
            cert.not_after = now + day * not_after;
            store.record_certificate(&cert, None, now).unwrap();
        }
        let found = |wanted: &str| store.find_certificate(wanted).map(|r| r.map(|r| r.sha256));
        assert_eq!(found("www.example.com").unwrap().as_deref(), Some("cc03"));
        assert_eq!(found("WWW.Example.COM").unwrap().as_deref(), Some("cc03"));
        assert_eq!(found("2").unwrap().as_deref(), Some("bb02"), "row id");
        assert_eq!(found("www.other.com").unwrap(), None);
        assert_eq!(found("99").unwrap(), None, "a row id that is not there");
        let error = found("bb0").unwrap_err();
        assert!(error.is_usage());
        assert!(
            error.to_string().contains("8 or more hex digits"),
            "{error}"
        );
    }

    /// A batch holds its events and the furthest position until it is committed, then
    /// writes them together and is empty again.
    #[test]
    fn a_batch_is_written_at_its_commit_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("f.db")).unwrap();
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut batch = MailBatch::default();
        batch.event(
            None,
            "mail_without_certificate",
            "uid 3",
            Some(&position(3, None)),
        );
        batch.advance(&position(5, None));
        batch.event(
            None,
            "mail_without_certificate",
            "uid 4",
            Some(&position(4, None)),
        );
        assert_eq!(events(&store, "mail_without_certificate"), 0);
        assert_eq!(store.mailbox_state("a", "INBOX").unwrap(), None);
        store.commit_batch(&mut batch, now).unwrap();
        assert!(batch.is_empty());
        assert_eq!(events(&store, "mail_without_certificate"), 2);
        let state = store.mailbox_state("a", "INBOX").unwrap().unwrap();
        assert_eq!(
            (state.uidvalidity, state.last_uid),
            (9, 5),
            "the furthest, not the last"
        );
        store.commit_batch(&mut batch, now).unwrap();
        assert_eq!(
            events(&store, "mail_without_certificate"),
            2,
            "an empty batch writes nothing"
        );
    }

    /// Recording a certificate leaves its mail's mark pending in the same transaction
    /// that moves the position; the row goes when the mark is applied.
    #[test]
    fn a_recorded_mail_is_pending_until_marked() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("f.db")).unwrap();
        let now = OffsetDateTime::UNIX_EPOCH;
        store
            .record_certificate(&certificate("aa"), Some(&position(4, Some("flag"))), now)
            .unwrap();
        // The same certificate again (another mail): pending too. Without a mark: not.
        store
            .record_certificate(&certificate("aa"), Some(&position(5, Some("flag"))), now)
            .unwrap();
        store
            .record_certificate(&certificate("bb"), Some(&position(6, None)), now)
            .unwrap();
        assert_eq!(
            store.mailbox_state("a", "INBOX").unwrap().unwrap().last_uid,
            6
        );
        let pending = store.pending_marks("a", "INBOX").unwrap();
        assert_eq!(
            pending
                .iter()
                .map(|p| (p.uid, p.action.as_str()))
                .collect::<Vec<_>>(),
            vec![(4, "flag"), (5, "flag")]
        );
        assert_eq!(pending[0].last_error, None);

        // Failures: one event for the first, none for the retries.
        for error in ["NO [x] 10:00", "NO [x] 10:05"] {
            store
                .pending_mark_failed(&position(4, None), "flag", error, "detail", now)
                .unwrap();
        }
        assert_eq!(events(&store, "mark_failed"), 1);
        assert_eq!(
            store.pending_marks("a", "INBOX").unwrap()[0]
                .last_error
                .as_deref(),
            Some("NO [x] 10:05")
        );

        store
            .clear_pending_mark(&position(4, None), Some(("mail_marked", "done")), now)
            .unwrap();
        store
            .clear_pending_mark(&position(5, None), None, now)
            .unwrap();
        assert!(store.pending_marks("a", "INBOX").unwrap().is_empty());
        assert_eq!(events(&store, "mail_marked"), 1);
    }

    /// A database of schema 1 gets the table of migration 2 and keeps its rows.
    #[test]
    fn a_version_1_database_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO mailbox_state VALUES ('a', 'INBOX', 9, 3, 'then')",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(
            store.mailbox_state("a", "INBOX").unwrap().unwrap().last_uid,
            3
        );
        assert!(store.pending_marks("a", "INBOX").unwrap().is_empty());
    }
}
