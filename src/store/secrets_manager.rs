//! The `secrets_manager` table: where each certificate is in IBM Cloud Secrets Manager.
//! A row is written pending before the first call for its certificate; stored (with the
//! secret's id and version), superseded or failed after. Never a private key.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;

use super::{
    CERTIFICATE_COLUMNS, CertificateRow, Store, StoreError, certificate_event, certificate_row,
    timestamp,
};
use crate::text::printable;

/// Where a certificate's import into Secrets Manager is (`secrets_manager.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretState {
    /// Calls are under way, or a run stopped during them: the next run searches first.
    Pending,
    /// The secret's current version is this certificate (or was, when it was stored).
    Stored,
    /// The secret holds a later certificate for the name: this one is not imported.
    Superseded,
    /// The last attempt failed; the next run tries again.
    Failed,
}

impl SecretState {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretState::Pending => "pending",
            SecretState::Stored => "stored",
            SecretState::Superseded => "superseded",
            SecretState::Failed => "failed",
        }
    }

    /// Whether nothing is left to do for the certificate.
    pub fn is_settled(self) -> bool {
        matches!(self, SecretState::Stored | SecretState::Superseded)
    }

    /// The states of the settled rows, as stored.
    fn settled() -> [&'static str; 2] {
        [
            SecretState::Stored.as_str(),
            SecretState::Superseded.as_str(),
        ]
    }
}

/// Where a certificate is in Secrets Manager: the secret, and the version's number and
/// id when known.
pub struct SecretPlace<'a> {
    pub secret_id: &'a str,
    pub version: Option<i64>,
    pub version_id: Option<&'a str>,
}

/// A row of `secrets_manager`. Serialised with the column names, for `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretRow {
    pub certificate_id: i64,
    pub secret_name: String,
    /// [`SecretState::as_str`] as stored.
    pub state: String,
    pub secret_id: Option<String>,
    /// The version's number: how many versions the secret had with this one (§4).
    pub secret_version: Option<i64>,
    /// The version's own id, a UUID (docs/secrets-manager.md §4).
    pub secret_version_id: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub stored_at: Option<String>,
    pub updated_at: String,
}

/// The columns [`secret_row`] reads; `{version_id}` is the column, or NULL in a database
/// opened read-only before the migration that added it.
const SECRET_COLUMNS: &str = "certificate_id, secret_name, state, secret_id, secret_version, \
     attempts, last_error, stored_at, updated_at, {version_id}";

fn secret_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SecretRow> {
    Ok(SecretRow {
        certificate_id: r.get(0)?,
        secret_name: r.get(1)?,
        state: r.get(2)?,
        secret_id: r.get(3)?,
        secret_version: r.get(4)?,
        attempts: r.get(5)?,
        last_error: r.get(6)?,
        stored_at: r.get(7)?,
        updated_at: r.get(8)?,
        secret_version_id: r.get(9)?,
    })
}

impl Store {
    /// Whether the table exists: a database opened read-only (`list`, `show`, a dry run)
    /// may not have been migrated to it yet, and then holds no row of it.
    fn has_secrets_table(&self) -> Result<bool, StoreError> {
        (self.conn)
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'secrets_manager'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(self.sql())
    }

    /// [`SECRET_COLUMNS`] as this database has them: a database opened read-only may
    /// predate the `secret_version_id` column.
    fn secret_columns(&self) -> Result<String, StoreError> {
        let has_version_id = (self.conn)
            .query_row(
                "SELECT count(*) FROM pragma_table_info('secrets_manager')
                 WHERE name = 'secret_version_id'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(self.sql())?
            > 0;
        let version_id = if has_version_id {
            "secret_version_id"
        } else {
            "NULL"
        };
        Ok(SECRET_COLUMNS.replace("{version_id}", version_id))
    }

    /// The certificates not settled in Secrets Manager, the soonest to expire first, so
    /// that a name's latest certificate is imported last and ends as the current version.
    pub fn certificates_for_secrets_manager(&self) -> Result<Vec<CertificateRow>, StoreError> {
        if !self.has_secrets_table()? {
            let mut all = self.list_certificates(None)?;
            all.sort_by(|a, b| (&a.not_after, a.id).cmp(&(&b.not_after, b.id)));
            return Ok(all);
        }
        let [stored, superseded] = SecretState::settled();
        let mut statement = (self.conn)
            .prepare(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE id NOT IN
                     (SELECT certificate_id FROM secrets_manager WHERE state IN (?1, ?2))
                 ORDER BY not_after, id"
            ))
            .map_err(self.sql())?;
        let rows =
            (statement.query_map([stored, superseded], certificate_row)).map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    /// Before the first call for a certificate: its row is pending, one attempt more.
    pub fn secret_pending(
        &self,
        certificate_id: i64,
        secret_name: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        (self.conn)
            .execute(
                "INSERT INTO secrets_manager (certificate_id, secret_name, state, attempts, updated_at)
                 VALUES (?1, ?2, ?3, 1, ?4)
                 ON CONFLICT (certificate_id) DO UPDATE SET
                     secret_name = excluded.secret_name, state = excluded.state,
                     attempts = attempts + 1, updated_at = excluded.updated_at",
                params![certificate_id, secret_name, SecretState::Pending.as_str(), timestamp(now)],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// The certificate is the secret's version `version` (or superseded there), with an
    /// event saying what was done (`what`: "created", "version added"...).
    pub fn secret_settled(
        &self,
        certificate_id: i64,
        state: SecretState,
        place: &SecretPlace<'_>,
        what: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let at = timestamp(now);
        let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
        tx.execute(
            "UPDATE secrets_manager SET state = ?2, secret_id = ?3, secret_version = ?4,
                 secret_version_id = ?5, last_error = NULL, stored_at = ?6, updated_at = ?6
             WHERE certificate_id = ?1",
            params![
                certificate_id,
                state.as_str(),
                place.secret_id,
                place.version,
                place.version_id,
                at
            ],
        )
        .map_err(self.sql())?;
        let secret_id = place.secret_id;
        let version = match place.version_id {
            Some(version_id) => format!(" version {version_id}"),
            None => String::new(),
        };
        let detail = format!(
            "certificate #{certificate_id}: Secrets Manager secret {secret_id}{version}: {what}"
        );
        certificate_event(&tx, certificate_id, "secret_stored", &detail, &at)
            .map_err(self.sql())?;
        tx.commit().map_err(self.sql())
    }

    /// The import failed: kept for the next run, the error recorded and an event added.
    pub fn secret_failed(
        &self,
        certificate_id: i64,
        error: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let at = timestamp(now);
        let error = printable(error).into_owned();
        let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
        tx.execute(
            "UPDATE secrets_manager SET state = ?2, last_error = ?3, updated_at = ?4
             WHERE certificate_id = ?1",
            params![certificate_id, SecretState::Failed.as_str(), error, at],
        )
        .map_err(self.sql())?;
        let detail = format!("certificate #{certificate_id}: Secrets Manager: {error}");
        certificate_event(&tx, certificate_id, "secret_failed", &detail, &at)
            .map_err(self.sql())?;
        tx.commit().map_err(self.sql())
    }

    /// The Secrets Manager row of one certificate.
    pub fn secret_of(&self, certificate_id: i64) -> Result<Option<SecretRow>, StoreError> {
        if !self.has_secrets_table()? {
            return Ok(None);
        }
        (self.conn)
            .query_row(
                &format!(
                    "SELECT {} FROM secrets_manager WHERE certificate_id = ?1",
                    self.secret_columns()?
                ),
                [certificate_id],
                secret_row,
            )
            .optional()
            .map_err(self.sql())
    }

    /// Every row of `secrets_manager`, by certificate.
    pub fn secret_rows(&self) -> Result<Vec<SecretRow>, StoreError> {
        if !self.has_secrets_table()? {
            return Ok(Vec::new());
        }
        let mut statement = (self.conn)
            .prepare(&format!(
                "SELECT {} FROM secrets_manager ORDER BY certificate_id",
                self.secret_columns()?
            ))
            .map_err(self.sql())?;
        let rows = statement.query_map([], secret_row).map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of an older schema, opened read-only, has no `secrets_manager` table:
    /// `list` and `show` must still work.
    #[test]
    fn a_database_without_the_table_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let store = Store::open(&path).unwrap();
        store
            .conn
            .execute_batch("DROP TABLE secrets_manager")
            .unwrap();
        drop(store);
        let store = Store::open_read_only(&path).unwrap().unwrap();
        assert_eq!(store.secret_rows().unwrap(), Vec::new());
        assert_eq!(store.secret_of(1).unwrap(), None);
        assert!(store.certificates_for_secrets_manager().unwrap().is_empty());
    }

    /// A database opened read-only before the migration that added `secret_version_id`
    /// reads its rows with no version id.
    #[test]
    fn a_database_without_the_version_id_column_reads_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let store = Store::open(&path).unwrap();
        store
            .conn
            .execute_batch(
                "INSERT INTO certificates (id, common_name, subject_alt_names, serial, sha256,
                     issuer, not_before, not_after, certificate_pem, chain_pem, imported_at)
                 VALUES (1, 'a', '', '1', 'ab', 'i', 'x', 'y', '', '', 'z');
                 INSERT INTO secrets_manager (certificate_id, secret_name, state, secret_id,
                     secret_version, updated_at)
                 VALUES (1, 'a', 'stored', 'id-1', 1, 'z');
                 ALTER TABLE secrets_manager DROP COLUMN secret_version_id;",
            )
            .unwrap();
        drop(store);
        let store = Store::open_read_only(&path).unwrap().unwrap();
        let row = store.secret_of(1).unwrap().unwrap();
        assert_eq!(row.secret_id.as_deref(), Some("id-1"));
        assert_eq!(row.secret_version_id, None);
        assert_eq!(store.secret_rows().unwrap().len(), 1);
    }
}
