//! Numbered schema migrations. `PRAGMA user_version` holds how many have run; each runs in
//! the transaction that bumps it, so a crash leaves the schema at one version or the next.
//! Append only: never edit a migration that has shipped.

pub const MIGRATIONS: &[&str] = &[
    // 1: the schema of docs/architecture.md, plus `source` (the file or mailbox message a
    // certificate came from) so a person reviewing the table can find the mail again.
    "CREATE TABLE certificates (
        id                     INTEGER PRIMARY KEY,
        order_id               INTEGER,
        common_name            TEXT NOT NULL,
        subject_alt_names      TEXT NOT NULL,
        serial                 TEXT NOT NULL,
        sha256                 TEXT NOT NULL UNIQUE,
        issuer                 TEXT NOT NULL,
        not_before             TEXT NOT NULL,
        not_after              TEXT NOT NULL,
        certificate_pem        TEXT NOT NULL,
        chain_pem              TEXT NOT NULL,
        key_source             TEXT,
        portal_certificate_id  INTEGER,
        source_message_id      TEXT,
        source                 TEXT,
        imported_at            TEXT NOT NULL
    );
    CREATE INDEX certificates_not_after ON certificates (not_after);
    CREATE INDEX certificates_order_id ON certificates (order_id);
    CREATE TABLE orders (
        order_id             INTEGER PRIMARY KEY,
        common_name          TEXT,
        state                TEXT NOT NULL,
        resend_requested_at  TEXT,
        last_error           TEXT,
        updated_at           TEXT NOT NULL
    );
    CREATE TABLE mailbox_state (
        account      TEXT NOT NULL,
        folder       TEXT NOT NULL,
        uidvalidity  INTEGER NOT NULL,
        last_uid     INTEGER NOT NULL,
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (account, folder)
    );
    CREATE TABLE events (
        id        INTEGER PRIMARY KEY,
        at        TEXT NOT NULL,
        order_id  INTEGER,
        kind      TEXT NOT NULL,
        detail    TEXT NOT NULL
    );
    CREATE INDEX events_order_id ON events (order_id);",
    // 2: how many resends in a row got no mail, for the backoff between resends
    // (docs/architecture.md, "Pending orders").
    "ALTER TABLE orders ADD COLUMN resend_attempts INTEGER NOT NULL DEFAULT 0;",
    // 3: the deploy hook's state per certificate, so that no certificate is left
    // undeployed by a crash, a failure or a run that did not record it.
    "CREATE TABLE deployments (
        certificate_id  INTEGER PRIMARY KEY REFERENCES certificates (id),
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        done_at         TEXT,
        last_error      TEXT,
        updated_at      TEXT NOT NULL
    );",
    // 4: mails whose certificate is recorded but whose `after_import` is not applied yet
    // (the mark failed, or the run stopped before it). Written in the transaction that
    // records the certificate and moves the mailbox position past the mail, deleted once
    // the mark is applied; every scan retries what is left.
    "CREATE TABLE pending_marks (
        account      TEXT NOT NULL,
        folder       TEXT NOT NULL,
        uidvalidity  INTEGER NOT NULL,
        uid          INTEGER NOT NULL,
        action       TEXT NOT NULL,
        last_error   TEXT,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (account, folder, uidvalidity, uid)
    );",
    // 5: when each command last ran and how it ended, for `[metrics] textfile`: the file
    // shows every command's last run, so the values must outlive the run that wrote them.
    "CREATE TABLE runs (
        command      TEXT PRIMARY KEY,
        finished_at  TEXT NOT NULL,
        exit_code    INTEGER NOT NULL
    );",
    // 6: each certificate's place in IBM Cloud Secrets Manager (docs/secrets-manager.md):
    // the secret's name, id and version, and where the import is (`SecretState`). The row
    // is written pending before the first call, so a run killed mid-import is finished by
    // the next one, which searches by name before any create. No private key is stored.
    "CREATE TABLE secrets_manager (
        certificate_id  INTEGER PRIMARY KEY REFERENCES certificates (id),
        secret_name     TEXT NOT NULL,
        state           TEXT NOT NULL,
        secret_id       TEXT,
        secret_version  INTEGER,
        attempts        INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        stored_at       TEXT,
        updated_at      TEXT NOT NULL
    );",
    // 7: moving load balancer listeners to a new certificate (docs/architecture.md,
    // "Replacing certificates in use"). `replacement_plans` says a certificate's listeners
    // were looked for; `replacements` holds one row per listener to move, written before
    // anything is sent; `replaced_certificates` the old certificates and whether they
    // were deleted from the portal's store.
    "CREATE TABLE replacement_plans (
        certificate_id  INTEGER PRIMARY KEY REFERENCES certificates (id),
        planned_at      TEXT NOT NULL
    );
    CREATE TABLE replacements (
        id                  INTEGER PRIMARY KEY,
        certificate_id      INTEGER NOT NULL REFERENCES certificates (id),
        new_portal_id       INTEGER NOT NULL,
        old_portal_id       INTEGER NOT NULL,
        listener_uuid       TEXT NOT NULL,
        load_balancer_uuid  TEXT NOT NULL,
        state               TEXT NOT NULL,
        attempts            INTEGER NOT NULL DEFAULT 0,
        last_error          TEXT,
        created_at          TEXT NOT NULL,
        updated_at          TEXT NOT NULL,
        UNIQUE (new_portal_id, listener_uuid)
    );
    CREATE INDEX replacements_certificate_id ON replacements (certificate_id);
    CREATE TABLE replaced_certificates (
        old_portal_id   INTEGER PRIMARY KEY,
        certificate_id  INTEGER NOT NULL REFERENCES certificates (id),
        state           TEXT NOT NULL,
        last_error      TEXT,
        updated_at      TEXT NOT NULL
    );",
    // 8: the secret version's own id (a UUID; docs/secrets-manager.md §4), beside its
    // number: the number is what the console shows, the id is what the API addresses
    // (`/api/v2/secrets/{id}/versions/{version_id}`).
    "ALTER TABLE secrets_manager ADD COLUMN secret_version_id TEXT;",
];
