//! Secrets stay secret: the portal API key, the IMAP password, the OAuth token and the
//! private keys in `[keys] dirs` appear in no log line at any verbosity, no error message,
//! no `--json` output, no database row (nor anywhere in the database files), and no
//! argument list or environment of a child process; and every file fulfill writes is
//! created 0600 (its folders 0700) even under umask 022.
//!
//! The secrets are distinctive canary values, handed to fulfill the ways a user does:
//! `*_cmd` commands that read them from 0600 files, a literal `api_key` in a 0600 config,
//! and the environment variables. Every run is the real binary against the local portal
//! (tests/support/portal.rs) and a real Dovecot over TLS (tests/support/dovecot.rs), and
//! each run is checked to have really used the secret (authenticated, uploaded the key)
//! so that "nothing leaked" is never vacuous. A secret is looked for raw, in hex, and in
//! base64 at every alignment (HTTP Basic, XOAUTH2 and SASL PLAIN all base64 it); a private
//! key also by its PEM body lines, its DER in hex and its private scalar.

mod support;

use fulfill_test_pki as pki;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use support::dovecot::{Dovecot, deliver_when_idle, dovecot_or_skip};
use support::portal::{Account, Auth, Fault, LocalPortal, OrderSpec};
use support::{Home, open_db};
use tempfile::TempDir;

const API_KEY: &str = "canary-apikey-7f3a9c2e51d84b6f0a13";
const IMAP_PASSWORD: &str = "canary-imappw-4be1d07a93c2f86571";
const OAUTH_TOKEN: &str = "canary-oauthtok-9d2c6e18f4a7b350c2";
const WRONG_PASSWORD: &str = "canary-wrongpw-31c8a0f5e7d24b9610";
const WRONG_API_KEY: &str = "canary-badkey-e45b7109c3a2d8f6aa";
const WRONG_TOKEN: &str = "canary-badtoken-58e0c3b1a7f9264d11";

/// Every canary, by name.
const CANARIES: [(&str, &str); 6] = [
    ("API key", API_KEY),
    ("IMAP password", IMAP_PASSWORD),
    ("OAuth token", OAUTH_TOKEN),
    ("wrong IMAP password", WRONG_PASSWORD),
    ("wrong API key", WRONG_API_KEY),
    ("wrong OAuth token", WRONG_TOKEN),
];

const PORTAL_USER: &str = "731442_secrets@example.com";
/// Dovecot users added for this test, sharing the usual user's Maildir: one logs in with
/// [`IMAP_PASSWORD`], the other with XOAUTH2 and [`OAUTH_TOKEN`].
const IMAP_USER: &str = "fulfill-canary";
const OAUTH_USER: &str = "fulfill-oauth";

/// (label, flags, RUST_LOG=trace): every verbosity fulfill has. The binary does not read
/// RUST_LOG today; the runs with it prove that setting it changes nothing either.
const LEVELS: [(&str, &[&str], bool); 7] = [
    ("-q", &["-q"], false),
    ("default", &[], false),
    ("-v", &["-v"], false),
    ("-vv", &["-vv"], false),
    ("-vvv", &["-vvv"], false),
    ("RUST_LOG=trace", &[], true),
    ("RUST_LOG=trace -vvv", &["-vvv"], true),
];

// ---------------------------------------------------------------------------------------
// What to look for
// ---------------------------------------------------------------------------------------

/// Byte strings that must not appear, each with what it is.
struct Needles(Vec<(String, Vec<u8>)>);

/// base64 of `secret` wherever it starts in a longer encoded text: for each of the three
/// alignments, the characters that depend on the secret's bytes only.
fn base64_forms(secret: &[u8]) -> Vec<String> {
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ];
    let mut forms = Vec::new();
    for engine in engines {
        for offset in 0..3 {
            let mut data = vec![0u8; offset];
            data.extend_from_slice(secret);
            let encoded = engine.encode(&data);
            let start = offset.div_ceil(3) * 4;
            let end = (offset + secret.len()) / 3 * 4;
            if end >= start + 12 {
                forms.push(encoded[start..end].to_string());
            }
        }
    }
    forms
}

impl Needles {
    /// The canaries, and the private keys found in `keys_dir` now.
    fn new(keys_dir: &Path) -> Needles {
        let mut needles = Needles(Vec::new());
        for (name, canary) in CANARIES {
            needles.add_secret(name, canary.as_bytes());
        }
        needles.add_private_keys(keys_dir);
        // Whatever key it is: no PEM private key block anywhere.
        needles.0.push((
            "a PEM private key block".into(),
            b"PRIVATE KEY-----".to_vec(),
        ));
        needles
    }

    fn add_secret(&mut self, name: &str, secret: &[u8]) {
        self.0.push((name.to_string(), secret.to_vec()));
        self.0
            .push((format!("{name} (hex)"), hex::encode(secret).into_bytes()));
        self.0.push((
            format!("{name} (HEX)"),
            hex::encode_upper(secret).into_bytes(),
        ));
        for form in base64_forms(secret) {
            self.0.push((format!("{name} (base64)"), form.into_bytes()));
        }
    }

    /// Each private key file's PEM body lines, its DER in hex and (P-256) its scalar.
    fn add_private_keys(&mut self, keys_dir: &Path) {
        let Ok(entries) = fs::read_dir(keys_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            let Ok(blocks) = pem::parse_many(&text) else {
                continue;
            };
            if !blocks.iter().any(|b| b.tag().ends_with("PRIVATE KEY")) {
                continue;
            }
            let name = format!("private key {}", entry.file_name().to_string_lossy());
            for line in text.lines().map(str::trim) {
                if line.len() >= 16 && !line.starts_with("-----") {
                    self.0
                        .push((format!("{name} (PEM line)"), line.as_bytes().to_vec()));
                }
            }
            for block in blocks.iter().filter(|b| b.tag().ends_with("PRIVATE KEY")) {
                self.0.push((
                    format!("{name} (DER hex)"),
                    hex::encode(block.contents()).into_bytes(),
                ));
                if let Ok(key) = <p256::SecretKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(
                    block.contents(),
                ) {
                    self.add_secret(&format!("{name} scalar"), &key.to_bytes());
                }
            }
        }
    }

    /// Panics, saying where, if any needle is in `haystack`. (An ASCII needle is found
    /// in a lossy view of the bytes wherever it is, with std's fast search.)
    fn assert_absent(&self, what: &str, haystack: &[u8]) {
        let text = String::from_utf8_lossy(haystack);
        for (name, needle) in &self.0 {
            if !needle.is_ascii() {
                // A raw private scalar: bytes, looked for as bytes.
                assert!(
                    !haystack.windows(needle.len()).any(|w| w == &needle[..]),
                    "LEAK: the {name} is in {what} (raw bytes)"
                );
                continue;
            }
            let needle = std::str::from_utf8(needle).expect("ASCII");
            if let Some(at) = text.find(needle) {
                let context: String = text[at..].chars().take(needle.len() + 200).collect();
                let before: String = text[..at]
                    .chars()
                    .rev()
                    .take(200)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                panic!("LEAK: the {name} is in {what}:\n...{before}{context}...");
            }
        }
    }

    fn private_key_count(&self) -> usize {
        self.0
            .iter()
            .filter(|(name, _)| name.ends_with("(DER hex)"))
            .count()
    }
}

// ---------------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------------

/// How the portal key reaches fulfill.
#[derive(Clone, Copy, Debug)]
enum PortalAuth {
    /// `api_key_cmd` reading the key from a 0600 file.
    Cmd(&'static str),
    /// A literal `api_key` in the config file (0600 unless the test says otherwise).
    Literal(&'static str),
    /// `SL_API_KEY`.
    Env(&'static str),
}

/// How the IMAP credential reaches fulfill.
#[derive(Clone, Copy, Debug)]
enum MailAuth {
    /// `password_cmd` reading the password from a 0600 file.
    PasswordCmd(&'static str),
    /// `FULFILL_IMAP_PASSWORD`.
    PasswordEnv(&'static str),
    /// `oauth2_token_cmd` (XOAUTH2) reading the token from a 0600 file.
    TokenCmd(&'static str),
}

/// One run of the binary.
struct Run {
    label: String,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Run {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn all(&self) -> String {
        format!(
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.label,
            String::from_utf8_lossy(&self.stdout),
            self.stderr()
        )
    }
}

/// Mails the "CA" sends when an order's fulfillment email is resent.
type Outbox = Arc<Mutex<HashMap<i64, Vec<u8>>>>;

struct Fixture {
    dovecot: Arc<Dovecot>,
    portal: LocalPortal,
    /// fulfill's HOME: holds nothing but what fulfill itself writes.
    home: Home,
    /// Everything the test provides: config files, secret files, keys, hook, traces.
    aux: TempDir,
    issuing: pki::Ca,
    outbox: Outbox,
    /// Counter for names of orders, configs and mails.
    serial: u32,
}

/// An order whose key is in the keys folder, and the mail carrying its certificate.
struct Order {
    id: i64,
    name: String,
    mail: Vec<u8>,
    sha256: String,
    key_pem: String,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        let dovecot = dovecot_or_skip()?;
        add_canary_users(&dovecot);
        let dovecot = Arc::new(dovecot);
        let portal = LocalPortal::start(Account::new(731_442, PORTAL_USER, API_KEY));
        let home = Home::new();
        let aux = tempfile::tempdir().expect("temp dir");
        let root = pki::root("Secrets Test Root");
        let issuing = pki::intermediate("Secrets Test Issuing CA", &root);
        for dir in ["keys", "trace", "secrets", "mails"] {
            fs::create_dir(aux.path().join(dir)).expect("aux folders");
        }
        fs::write(aux.path().join("root.pem"), &root.pem).expect("root.pem");
        for (file, secret) in [
            ("api-key", API_KEY),
            ("wrong-api-key", WRONG_API_KEY),
            ("imap-password", IMAP_PASSWORD),
            ("wrong-password", WRONG_PASSWORD),
            ("oauth-token", OAUTH_TOKEN),
            ("wrong-token", WRONG_TOKEN),
        ] {
            write_private(
                &aux.path().join("secrets").join(file),
                &format!("{secret}\n"),
            );
        }
        // The deploy hook: records its arguments, $0, environment, its parent's argv, every
        // process's argv at that moment, its stdin, the umask it inherited and the modes of
        // the files in fulfill's data folder while fulfill has them open (but for live/, the
        // public certificate files the hook reads).
        let hook = aux.path().join("hook.sh");
        fs::write(
            &hook,
            format!(
                "#!/bin/sh\n\
                 out={trace}/hook-$$\n\
                 {{\n\
                 echo \"argv0=$0\"\n\
                 for a in \"$@\"; do echo \"arg=$a\"; done\n\
                 echo '--- env'; env\n\
                 echo '--- parent'; tr '\\0' ' ' < /proc/$PPID/cmdline; echo\n\
                 echo '--- processes'\n\
                 for p in /proc/[0-9]*; do tr '\\0' ' ' < \"$p/cmdline\" 2>/dev/null; echo; done\n\
                 }} > \"$out.txt\"\n\
                 cat > \"$out.stdin\"\n\
                 umask > \"$out.umask\"\n\
                 for f in \"$HOME\"/.local/share/fulfill/* \"$HOME\"/.local/share/fulfill/.[!.]*; do\n\
                 [ -e \"$f\" ] && [ \"${{f##*/}}\" != live ] && stat -c '%a %n' \"$f\"\n\
                 done > \"$out.modes\"\n\
                 exit 0\n",
                trace = aux.path().join("trace").display()
            ),
        )
        .expect("hook");
        fs::set_permissions(&hook, fs::Permissions::from_mode(0o700)).expect("chmod hook");

        // The CA: on a FulfillmentEmail resend, deliver that order's mail while fulfill
        // waits for it (in IDLE, as the server sees it; not after a guessed delay).
        let outbox: Outbox = Arc::default();
        let (mails, server) = (outbox.clone(), Arc::downgrade(&dovecot));
        portal.set_on_resend(Some(Box::new(move |order_id| {
            let mail = mails
                .lock()
                .expect("outbox")
                .get(&order_id)
                .cloned()
                .unwrap_or_default();
            if let Some(server) = server.upgrade() {
                deliver_when_idle(&server, "INBOX", vec![mail]);
            }
        })));
        Some(Fixture {
            dovecot,
            portal,
            home,
            aux,
            issuing,
            outbox,
            serial: 0,
        })
    }

    fn keys(&self) -> PathBuf {
        self.aux.path().join("keys")
    }

    fn trace(&self) -> PathBuf {
        self.aux.path().join("trace")
    }

    fn secret_file(&self, secret: &str) -> PathBuf {
        let name = match secret {
            API_KEY => "api-key",
            WRONG_API_KEY => "wrong-api-key",
            IMAP_PASSWORD => "imap-password",
            WRONG_PASSWORD => "wrong-password",
            OAUTH_TOKEN => "oauth-token",
            WRONG_TOKEN => "wrong-token",
            _ => panic!("not a canary"),
        };
        self.aux.path().join("secrets").join(name)
    }

    /// A secret command as a user writes one, that also records its own environment: it
    /// must hold no other secret.
    fn secret_cmd(&mut self, what: &str, secret: &str) -> String {
        self.serial += 1;
        format!(
            "env > {}/{what}-cmd-{}-$$.env; cat {}",
            self.trace().display(),
            self.serial,
            self.secret_file(secret).display()
        )
    }

    /// Writes a config file (mode 0600) and returns its path.
    fn config(&mut self, portal: PortalAuth, mail: MailAuth) -> PathBuf {
        let portal_key = match portal {
            PortalAuth::Cmd(key) => {
                format!("api_key_cmd = \"{}\"\n", self.secret_cmd("apikey", key))
            }
            PortalAuth::Literal(key) => format!("api_key = \"{key}\"\n"),
            PortalAuth::Env(_) => String::new(),
        };
        let (user, credential) = match mail {
            MailAuth::PasswordCmd(password) => (
                IMAP_USER,
                format!(
                    "password_cmd = \"{}\"\n",
                    self.secret_cmd("password", password)
                ),
            ),
            MailAuth::PasswordEnv(_) => (IMAP_USER, String::new()),
            MailAuth::TokenCmd(token) => (
                OAUTH_USER,
                format!(
                    "oauth2_token_cmd = \"{}\"\n",
                    self.secret_cmd("token", token)
                ),
            ),
        };
        self.serial += 1;
        let path = self.aux.path().join(format!("config-{}.toml", self.serial));
        let text = format!(
            "resend_cooldown = \"1h\"\n\
             deploy_hook = \"{hook} hook-argument\"\n\
             [portal]\nendpoint = \"{endpoint}\"\nusername = \"{PORTAL_USER}\"\n{portal_key}\
             timeout = \"5s\"\nretries = 1\nretry_wait = \"10ms\"\n\
             [mailbox]\nhost = \"127.0.0.1\"\nport = {port}\nca_file = \"{ca}\"\nusername = \"{user}\"\n{credential}\
             timeout = \"5s\"\npoll_interval = \"1s\"\nrun_timeout = \"1m\"\n\
             [keys]\ndirs = [\"{keys}\"]\n[validation]\ntrust_roots = [\"{root}\"]\n",
            hook = self.aux.path().join("hook.sh").display(),
            endpoint = self.portal.endpoint(),
            port = self.dovecot.imaps_port(),
            ca = self.dovecot.cert_pem_path().display(),
            keys = self.keys().display(),
            root = self.aux.path().join("root.pem").display(),
        );
        write_private(&path, &text);
        path
    }

    /// The environment that goes with these credentials.
    fn env(portal: PortalAuth, mail: MailAuth) -> Vec<(&'static str, &'static str)> {
        let mut env = Vec::new();
        if let PortalAuth::Env(key) = portal {
            env.push(("SL_API_KEY", key));
        }
        if let MailAuth::PasswordEnv(password) = mail {
            env.push(("FULFILL_IMAP_PASSWORD", password));
        }
        env
    }

    /// An approved order in the portal whose key is in the keys folder, and its mail,
    /// which the CA sends when the order is resent.
    fn order(&mut self) -> Order {
        self.serial += 1;
        let name = format!("www.s{}.example.com", self.serial);
        let spec = pki::LeafSpec::new(&[&name]).valid(pki::ymd(2025, 1, 1), pki::ymd(2034, 1, 1));
        let leaf = pki::leaf(&spec, &self.issuing);
        let key_pem = leaf.key_pem();
        write_private(&self.keys().join(format!("{name}.key")), &key_pem);
        let csr = pki::csr_pem(&leaf.key, Some(&name), &[&name]);
        let id = self.portal.add_order(OrderSpec::new(&name, &csr));
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc2822)
            .expect("RFC 2822 date");
        let mail = format!(
            "From: \"Test CA Orders\" <orders@ca.example>\r\nTo: certs@example.com\r\n\
             Subject: Your certificate for {name}\r\nDate: {date}\r\n\
             Message-ID: <{}.{name}@ca.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n\
             Your certificate:\r\n\r\n{}{}\r\n",
            self.serial,
            leaf.pem.replace('\n', "\r\n"),
            self.issuing.pem.replace('\n', "\r\n"),
        )
        .into_bytes();
        self.outbox.lock().expect("outbox").insert(id, mail.clone());
        Order {
            id,
            name,
            mail,
            sha256: fulfill::extract::sha256_hex(&leaf.der),
            key_pem,
        }
    }

    /// Runs `fulfill --config CONFIG ARGS` under umask 022, with the environment of
    /// `Home::fulfill` plus `env`; RUST_LOG=trace when `rust_log`.
    fn run(
        &self,
        label: &str,
        config: &Path,
        env: &[(&str, &str)],
        rust_log: bool,
        args: &[&str],
    ) -> Run {
        self.run_with_umask("022", label, config, env, rust_log, args)
    }

    fn run_with_umask(
        &self,
        umask: &str,
        label: &str,
        config: &Path,
        env: &[(&str, &str)],
        rust_log: bool,
        args: &[&str],
    ) -> Run {
        let mut cmd = support::env::command("sh");
        cmd.arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(support::fulfill_binary())
            .arg("--config")
            .arg(config)
            .args(args)
            // As Home::fulfill: a private HOME and nothing inherited that changes behaviour.
            .env("HOME", self.home.path())
            .current_dir(support::repo())
            .stdin(Stdio::null());
        for (name, value) in env {
            cmd.env(name, value);
        }
        if rust_log {
            cmd.env("RUST_LOG", "trace");
        }
        let output = cmd.output().expect("run fulfill");
        Run {
            label: format!("`fulfill {}` ({label})", args.join(" ")),
            code: output.status.code(),
            stdout: output.stdout,
            stderr: output.stderr,
        }
    }

    fn needles(&self) -> Needles {
        Needles::new(&self.keys())
    }

    /// The run's output holds no secret.
    fn assert_clean(&self, run: &Run) {
        let needles = self.needles();
        needles.assert_absent(&format!("stdout of {}", run.label), &run.stdout);
        needles.assert_absent(&format!("stderr of {}", run.label), &run.stderr);
    }

    /// Successful IMAP logins of `user` so far, in Dovecot's log.
    fn logins(&self, user: &str) -> usize {
        self.dovecot
            .log()
            .matches(&format!("Login: user=<{user}>"))
            .count()
    }

    /// Requests the portal authenticated with the right key.
    fn valid_portal_requests(&self) -> usize {
        self.portal
            .requests()
            .iter()
            .filter(|r| matches!(&r.auth, Auth::Valid { username } if username == PORTAL_USER))
            .count()
    }

    /// Everything the children wrote: no secret in any of it. Returns how many hook runs
    /// and secret-command runs there were.
    fn assert_children_clean(&self) -> (usize, usize) {
        let needles = self.needles();
        let (mut hooks, mut commands) = (0, 0);
        for entry in fs::read_dir(self.trace()).expect("trace folder").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = fs::read(entry.path()).expect("trace file");
            needles.assert_absent(&format!("the child's record {name}"), &bytes);
            if name.starts_with("hook-") && name.ends_with(".txt") {
                hooks += 1;
                let text = String::from_utf8_lossy(&bytes);
                assert!(text.contains("arg=hook-argument"), "{name}: {text}");
                assert!(text.contains("FULFILL_ORDER_ID="), "{name}: {text}");
            } else if name.starts_with("hook-") && name.ends_with(".stdin") {
                let text = String::from_utf8_lossy(&bytes);
                assert!(text.contains("BEGIN CERTIFICATE"), "{name}: {text}");
            } else if name.contains("-cmd-") {
                commands += 1;
            }
        }
        (hooks, commands)
    }

    /// The modes the hook saw while fulfill ran, and the modes of everything in HOME now.
    fn assert_private_files(&self) {
        let mut seen_while_running = Vec::new();
        for entry in fs::read_dir(self.trace()).expect("trace folder").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".umask") {
                let umask = fs::read_to_string(entry.path()).expect("umask record");
                assert!(
                    ["0022", "0000"].contains(&umask.trim()),
                    "the runs were under umask 022 (or 000): {umask}"
                );
            }
            if !name.ends_with(".modes") {
                continue;
            }
            for line in fs::read_to_string(entry.path())
                .expect("modes record")
                .lines()
            {
                let (mode, path) = line.split_once(' ').expect("mode and path");
                assert_eq!(
                    mode, "600",
                    "{path} was mode {mode} while fulfill ran (umask 022)"
                );
                let file = Path::new(path)
                    .file_name()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned();
                if !seen_while_running.contains(&file) {
                    seen_while_running.push(file);
                }
            }
        }
        seen_while_running.sort();
        if !seen_while_running.is_empty() {
            // The WAL and its index exist only while a connection is open: this is where
            // their modes can be seen.
            assert_eq!(
                seen_while_running,
                [
                    "fulfill.db",
                    "fulfill.db-shm",
                    "fulfill.db-wal",
                    "fulfill.db.lock"
                ],
                "the files fulfill had in its data folder during a deploy hook"
            );
        }
        assert_tree_private(self.home.path());
    }

    /// Every row of every table, and the raw bytes of the database files (and of the
    /// deploy hook's certificate files beside them), hold no secret. Returns
    /// (certificates, events) row counts.
    fn assert_database_clean(&self) -> (i64, i64) {
        let needles = self.needles();
        let db = self.home.default_db();
        let folder = db.parent().expect("data folder");
        for entry in walk_files(folder) {
            let bytes = fs::read(&entry).expect("database file");
            needles.assert_absent(&format!("the file {}", entry.display()), &bytes);
        }
        let conn = open_db(&db);
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .expect("sqlite_master")
            .query_map([], |r| r.get(0))
            .expect("tables")
            .collect::<Result<_, _>>()
            .expect("table names");
        for needed in ["certificates", "orders", "events", "mailbox_state"] {
            assert!(tables.iter().any(|t| t == needed), "{needed} in {tables:?}");
        }
        for table in &tables {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM \"{table}\""))
                .expect("select");
            let columns = stmt.column_count();
            let mut rows = stmt.query([]).expect("query");
            let mut dump = Vec::new();
            while let Some(row) = rows.next().expect("row") {
                for i in 0..columns {
                    match row.get_ref(i).expect("value") {
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            dump.extend_from_slice(t)
                        }
                        rusqlite::types::ValueRef::Integer(n) => {
                            dump.extend_from_slice(n.to_string().as_bytes())
                        }
                        rusqlite::types::ValueRef::Real(x) => {
                            dump.extend_from_slice(x.to_string().as_bytes())
                        }
                        rusqlite::types::ValueRef::Null => {}
                    }
                    dump.push(b'\t');
                }
                dump.push(b'\n');
            }
            needles.assert_absent(&format!("the table {table}"), &dump);
        }
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .expect("count")
        };
        (count("certificates"), count("events"))
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create file");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    file.write_all(text.as_bytes()).expect("write file");
}

/// Whether `path` is in the deploy hook's `live/` folder, beside a database under `root`.
fn is_deployed_certificate(path: &Path, root: &Path) -> bool {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative.components().any(|c| c.as_os_str() == "live")
}

/// Every file below `folder`, in its subfolders too.
fn walk_files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read folder").flatten() {
            match entry.file_type().expect("file type").is_dir() {
                true => stack.push(entry.path()),
                false => files.push(entry.path()),
            }
        }
    }
    files
}

/// Every file under `root` is 0600 and every folder 0700 (HOME holds only what fulfill
/// wrote), but for the deploy hook's certificate files under `live/`: certificates are
/// public, and a web server must read them (0644, in folders 0755 inside the 0700 data
/// folder). Returns the files seen.
fn assert_tree_private(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read folder").flatten() {
            let meta = fs::symlink_metadata(entry.path()).expect("stat");
            let mode = meta.permissions().mode() & 0o777;
            if is_deployed_certificate(&entry.path(), root) {
                let public = if meta.is_dir() { 0o755 } else { 0o644 };
                assert_eq!(
                    mode & 0o022,
                    0,
                    "{} is mode {mode:o}",
                    entry.path().display()
                );
                assert_eq!(
                    mode & public,
                    mode,
                    "{} is mode {mode:o}",
                    entry.path().display()
                );
                if meta.is_dir() {
                    stack.push(entry.path());
                } else {
                    files.push(entry.path());
                }
                continue;
            }
            if meta.is_dir() {
                assert_eq!(mode, 0o700, "{} is mode {mode:o}", entry.path().display());
                stack.push(entry.path());
            } else {
                assert_eq!(mode, 0o600, "{} is mode {mode:o}", entry.path().display());
                files.push(entry.path());
            }
        }
    }
    files
}

/// Adds two users to the test Dovecot's passwd file, both reading the usual user's Maildir
/// (so `Dovecot::append` delivers to them): [`IMAP_USER`] with [`IMAP_PASSWORD`], and
/// [`OAUTH_USER`] whose "password" is [`OAUTH_TOKEN`], checked through XOAUTH2, which is
/// turned on by a config reload (Dovecot 2.3 hands an XOAUTH2 token to the passdb like a
/// plain password). Waits until the server offers XOAUTH2.
fn add_canary_users(dovecot: &Dovecot) {
    let passwd_path = dovecot.dir().join("passwd");
    let passwd = fs::read_to_string(&passwd_path).expect("dovecot passwd file");
    let fields: Vec<&str> = passwd
        .lines()
        .next()
        .expect("one user")
        .split(':')
        .collect();
    let (uid, gid, home) = (fields[2], fields[3], fields[5]);
    let mail = format!("maildir:{}", dovecot.maildir_path().display());
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&passwd_path)
        .expect("open passwd");
    for (user, password) in [(IMAP_USER, IMAP_PASSWORD), (OAUTH_USER, OAUTH_TOKEN)] {
        writeln!(
            file,
            "{user}:{{PLAIN}}{password}:{uid}:{gid}::{home}::userdb_mail={mail}"
        )
        .expect("add user");
    }
    drop(file);
    let mut conf = fs::OpenOptions::new()
        .append(true)
        .open(dovecot.conf_path())
        .expect("open dovecot.conf");
    writeln!(conf, "auth_mechanisms = plain login xoauth2").expect("add xoauth2");
    drop(conf);
    let pid = dovecot.master_pid().expect("dovecot runs");
    let status = support::env::command("kill")
        .args(["-s", "HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success(), "reload dovecot");
    let started = Instant::now();
    loop {
        let greeting = (|| -> Option<String> {
            let tcp = std::net::TcpStream::connect(("127.0.0.1", dovecot.imaps_port())).ok()?;
            tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            let tls = dovecot.tls_connector().connect("localhost", tcp).ok()?;
            let mut line = String::new();
            BufReader::new(tls).read_line(&mut line).ok()?;
            Some(line)
        })()
        .unwrap_or_default();
        if greeting.contains("AUTH=XOAUTH2") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "dovecot never offered XOAUTH2 after the reload: {greeting}\n{}",
            dovecot.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The flags of a verbosity level plus `--json` when asked.
fn flags<'a>(level: &[&'a str], json: bool, command: &[&'a str]) -> Vec<&'a str> {
    let mut args: Vec<&str> = level.to_vec();
    if json {
        args.push("--json");
    }
    args.extend_from_slice(command);
    args
}

/// At -vv and above the run must really have logged at debug (trace at -vvv) level, or the
/// verbosity was not what the test thinks.
fn assert_verbosity(run: &Run, level: &str) {
    let stderr = run.stderr();
    if level.ends_with("-vvv") {
        assert!(stderr.contains("fulfill: trace:"), "{}", run.all());
    } else if level == "-vv" {
        assert!(stderr.contains("fulfill: debug:"), "{}", run.all());
    } else {
        assert!(!stderr.contains("fulfill: debug:"), "{}", run.all());
    }
}

// ---------------------------------------------------------------------------------------
// Success paths
// ---------------------------------------------------------------------------------------

/// `resend-and-import`, `poll`, `import`, `check`, `orders`, `list` and `show --pem` at
/// every verbosity, with and without --json, with the secrets from `*_cmd` commands: each
/// run authenticates to the portal and to Dovecot with the canaries and uploads a private
/// key, and none of them shows up anywhere.
#[test]
fn success_paths_leak_nothing_at_any_verbosity() {
    let Some(mut f) = Fixture::new() else { return };
    let (portal, mail) = (
        PortalAuth::Cmd(API_KEY),
        MailAuth::PasswordCmd(IMAP_PASSWORD),
    );
    let config = f.config(portal, mail);
    let env = Fixture::env(portal, mail);
    let mut uploaded = 0;
    for (level, level_flags, rust_log) in LEVELS {
        for json in [false, true] {
            let label = format!("{level}{}", if json { " --json" } else { "" });

            // resend-and-import: resendEmail, IMAP IDLE, upload, deploy hook.
            let order = f.order();
            let (logins, portal_ok) = (f.logins(IMAP_USER), f.valid_portal_requests());
            let id = order.id.to_string();
            let run = f.run(
                &label,
                &config,
                &env,
                rust_log,
                &flags(
                    level_flags,
                    json,
                    &["resend-and-import", "--order", &id, "--timeout", "30s"],
                ),
            );
            assert_eq!(run.code, Some(0), "{}", run.all());
            f.assert_clean(&run);
            assert_verbosity(&run, level);
            if json {
                let results: serde_json::Value =
                    serde_json::from_slice(&run.stdout).expect("--json output");
                assert_eq!(results[0]["outcome"], "imported", "{}", run.all());
                assert_eq!(results[0]["deploy_hook"], "ok", "{}", run.all());
            }
            assert!(f.logins(IMAP_USER) > logins, "IMAP login with the canary");
            assert!(f.valid_portal_requests() > portal_ok, "portal auth with it");
            uploaded += 1;
            let stored = f.portal.certificates();
            assert_eq!(stored.len(), uploaded, "{}", run.all());
            let last = stored.last().expect("uploaded");
            assert_eq!(last.sha256, order.sha256);
            assert_eq!(
                last.private_key.trim(),
                order.key_pem.trim(),
                "the private key was read and sent to the portal"
            );

            // poll: a mail for another order already in the mailbox.
            let order = f.order();
            f.dovecot.append("INBOX", &order.mail);
            let logins = f.logins(IMAP_USER);
            let run = f.run(
                &label,
                &config,
                &env,
                rust_log,
                &flags(level_flags, json, &["poll"]),
            );
            assert_eq!(run.code, Some(0), "{}", run.all());
            f.assert_clean(&run);
            assert!(f.logins(IMAP_USER) > logins, "IMAP login with the canary");
            uploaded += 1;
            assert_eq!(f.portal.certificates().len(), uploaded, "{}", run.all());
            assert_eq!(
                f.portal.certificates().last().expect("uploaded").sha256,
                order.sha256
            );

            // import: a saved mail.
            let order = f.order();
            let file = f.aux.path().join(format!("mails/{}.eml", order.name));
            fs::write(&file, &order.mail).expect("mail file");
            let id = order.id.to_string();
            let file = file.to_string_lossy().into_owned();
            let run = f.run(
                &label,
                &config,
                &env,
                rust_log,
                &flags(level_flags, json, &["import", "--order", &id, &file]),
            );
            assert_eq!(run.code, Some(0), "{}", run.all());
            f.assert_clean(&run);
            uploaded += 1;
            assert_eq!(f.portal.certificates().len(), uploaded, "{}", run.all());

            // The commands that read: check authenticates, orders lists, list and show
            // print from the database.
            for command in [
                &["check"][..],
                &["orders"],
                &["list"],
                &["show", "1", "--pem"],
            ] {
                let portal_ok = f.valid_portal_requests();
                let run = f.run(
                    &label,
                    &config,
                    &env,
                    rust_log,
                    &flags(level_flags, json, command),
                );
                assert_eq!(run.code, Some(0), "{}", run.all());
                f.assert_clean(&run);
                if command[0] == "check" || command[0] == "orders" {
                    assert!(f.valid_portal_requests() > portal_ok, "{}", run.all());
                }
            }
        }
    }
    let (hooks, commands) = f.assert_children_clean();
    // Every command that records a certificate runs the hook for it: resend-and-import,
    // poll and import, at each level with and without --json.
    assert_eq!(
        hooks,
        LEVELS.len() * 2 * 3,
        "one deploy hook per certificate recorded"
    );
    assert!(commands >= 2, "the secret commands ran ({commands})");
    let (certificates, events) = f.assert_database_clean();
    assert_eq!(certificates, uploaded as i64);
    assert!(events > 0);
    assert_eq!(
        f.needles().private_key_count(),
        uploaded,
        "every private key was looked for"
    );
    f.assert_private_files();
}

/// Secrets from the environment (SL_API_KEY, FULFILL_IMAP_PASSWORD) and from a literal
/// `api_key` in a 0600 config: used, and passed to no child — neither the deploy hook nor
/// the other secret's command.
#[test]
fn environment_and_literal_secrets_reach_no_child() {
    let Some(mut f) = Fixture::new() else { return };
    let cases = [
        (
            PortalAuth::Env(API_KEY),
            MailAuth::PasswordEnv(IMAP_PASSWORD),
        ),
        (
            PortalAuth::Env(API_KEY),
            MailAuth::PasswordCmd(IMAP_PASSWORD),
        ),
        (
            PortalAuth::Cmd(API_KEY),
            MailAuth::PasswordEnv(IMAP_PASSWORD),
        ),
        (
            PortalAuth::Literal(API_KEY),
            MailAuth::PasswordEnv(IMAP_PASSWORD),
        ),
    ];
    for (portal, mail) in cases {
        let config = f.config(portal, mail);
        let env = Fixture::env(portal, mail);
        for (level, level_flags, rust_log) in [LEVELS[1], LEVELS[4]] {
            let label = format!("{portal:?} {mail:?} {level}");
            let order = f.order();
            let (logins, portal_ok) = (f.logins(IMAP_USER), f.valid_portal_requests());
            let id = order.id.to_string();
            let run = f.run(
                &label,
                &config,
                &env,
                rust_log,
                &flags(
                    level_flags,
                    true,
                    &["resend-and-import", "--order", &id, "--timeout", "30s"],
                ),
            );
            assert_eq!(run.code, Some(0), "{}", run.all());
            f.assert_clean(&run);
            assert!(f.logins(IMAP_USER) > logins, "{label}: IMAP login");
            assert!(
                f.valid_portal_requests() > portal_ok,
                "{label}: portal auth"
            );
            assert_eq!(
                f.portal.certificates().last().expect("uploaded").sha256,
                order.sha256
            );
        }
    }
    let (hooks, commands) = f.assert_children_clean();
    assert_eq!(hooks, cases.len() * 2);
    assert_eq!(
        commands,
        2 * 2,
        "the api_key_cmd and password_cmd cases, two runs each"
    );
    f.assert_database_clean();
    f.assert_private_files();
}

/// XOAUTH2: the token from `oauth2_token_cmd` logs in, and a wrong one is refused; in
/// neither case does it show up.
#[test]
fn oauth_token_leaks_nowhere() {
    let Some(mut f) = Fixture::new() else { return };
    let good = f.config(PortalAuth::Cmd(API_KEY), MailAuth::TokenCmd(OAUTH_TOKEN));
    let bad = f.config(PortalAuth::Cmd(API_KEY), MailAuth::TokenCmd(WRONG_TOKEN));
    let mut imported = 0;
    for (level, level_flags, rust_log) in LEVELS {
        for json in [false, true] {
            let label = format!("{level} json={json}");
            let order = f.order();
            f.dovecot.append("INBOX", &order.mail);
            let logins = f.logins(OAUTH_USER);
            let run = f.run(
                &label,
                &good,
                &[],
                rust_log,
                &flags(level_flags, json, &["poll"]),
            );
            assert_eq!(run.code, Some(0), "{}", run.all());
            f.assert_clean(&run);
            assert!(f.logins(OAUTH_USER) > logins, "XOAUTH2 login");
            assert!(
                f.dovecot.log().contains("method=XOAUTH2"),
                "{}",
                f.dovecot.log()
            );
            imported += 1;
            assert_eq!(f.portal.certificates().len(), imported);

            let run = f.run(
                &label,
                &bad,
                &[],
                rust_log,
                &flags(level_flags, json, &["poll"]),
            );
            assert_eq!(run.code, Some(1), "{}", run.all());
            assert!(run.stderr().contains("refused the login"), "{}", run.all());
            f.assert_clean(&run);
        }
    }
    f.assert_children_clean();
    f.assert_database_clean();
    f.assert_private_files();
}

// ---------------------------------------------------------------------------------------
// Failure paths
// ---------------------------------------------------------------------------------------

/// Refused credentials, portal faults, failing secret commands and mistyped config files:
/// the error says what went wrong, at every verbosity and with --json, and never shows the
/// secret.
#[test]
fn failures_leak_nothing_at_any_verbosity() {
    let Some(mut f) = Fixture::new() else { return };
    // An order whose mail is waiting, so a run that gets past the failure would import.
    let order = f.order();
    f.dovecot.append("INBOX", &order.mail);
    let id = order.id.to_string();

    // (case, config, env, command, expected exit, what the error must say)
    type Case = (
        &'static str,
        PathBuf,
        Vec<(&'static str, &'static str)>,
        Vec<String>,
        i32,
        &'static str,
    );
    let mut cases: Vec<Case> = Vec::new();
    let poll = vec!["poll".to_string()];
    let resend = vec![
        "resend-and-import".to_string(),
        "--order".into(),
        id.clone(),
        "--timeout".into(),
        "5s".into(),
    ];
    for (what, mail) in [
        (
            "wrong IMAP password (password_cmd)",
            MailAuth::PasswordCmd(WRONG_PASSWORD),
        ),
        (
            "wrong IMAP password (FULFILL_IMAP_PASSWORD)",
            MailAuth::PasswordEnv(WRONG_PASSWORD),
        ),
    ] {
        let portal = PortalAuth::Cmd(API_KEY);
        cases.push((
            what,
            f.config(portal, mail),
            Fixture::env(portal, mail),
            poll.clone(),
            1,
            "refused the login",
        ));
    }
    for (what, portal) in [
        (
            "wrong API key (api_key_cmd)",
            PortalAuth::Cmd(WRONG_API_KEY),
        ),
        ("wrong API key (SL_API_KEY)", PortalAuth::Env(WRONG_API_KEY)),
        (
            "wrong API key (literal api_key)",
            PortalAuth::Literal(WRONG_API_KEY),
        ),
    ] {
        let mail = MailAuth::PasswordCmd(IMAP_PASSWORD);
        for command in [vec!["orders".to_string()], resend.clone()] {
            cases.push((
                what,
                f.config(portal, mail),
                Fixture::env(portal, mail),
                command,
                1,
                "Invalid API token",
            ));
        }
    }
    let (portal, mail) = (
        PortalAuth::Cmd(API_KEY),
        MailAuth::PasswordCmd(IMAP_PASSWORD),
    );
    let good = f.config(portal, mail);
    cases.push((
        "portal answers 500",
        good.clone(),
        Vec::new(),
        vec!["orders".into()],
        1,
        "Internal Error",
    ));
    cases.push((
        "portal answers 500",
        good.clone(),
        Vec::new(),
        resend.clone(),
        1,
        "Internal Error",
    ));

    // A secret command that fails after printing the secret: its output is not shown.
    let failing = f.aux.path().join("failing-cmd.toml");
    let text = fs::read_to_string(&good).expect("config").replace(
        &format!("cat {}", f.secret_file(API_KEY).display()),
        &format!(
            "cat {}; echo 'vault is locked' >&2; exit 3",
            f.secret_file(API_KEY).display()
        ),
    );
    write_private(&failing, &text);
    cases.push((
        "api_key_cmd fails",
        failing,
        Vec::new(),
        vec!["orders".into()],
        2,
        "vault is locked",
    ));
    // A literal key in a config others can read is refused without showing it.
    let readable = f.config(PortalAuth::Literal(API_KEY), mail);
    fs::set_permissions(&readable, fs::Permissions::from_mode(0o644)).expect("chmod 644");
    cases.push((
        "literal api_key in a 0644 config",
        readable,
        Vec::new(),
        vec!["orders".into()],
        2,
        "chmod 600",
    ));
    // Mistyped config files: the parse error must not quote the line holding the secret.
    let literal = format!("api_key = \"{API_KEY}\"\n");
    for (what, from, to, secret) in [
        (
            "unquoted api_key",
            literal.clone(),
            format!("api_key = {API_KEY}\n"),
            API_KEY,
        ),
        (
            "misspelt api_key",
            literal.clone(),
            format!("apikey = \"{API_KEY}\"\n"),
            API_KEY,
        ),
        (
            "password under [mailbox]",
            "[mailbox]\n".to_string(),
            format!("[mailbox]\npassword = \"{IMAP_PASSWORD}\"\n"),
            IMAP_PASSWORD,
        ),
    ] {
        let text = fs::read_to_string(f.config(PortalAuth::Literal(API_KEY), mail))
            .expect("config")
            .replace(&from, &to);
        assert!(text.contains(&to), "{what}: the mistake is in the config");
        assert!(text.contains(secret), "{what}: the config holds the secret");
        let path = f
            .aux
            .path()
            .join(format!("broken-{}.toml", what.replace(' ', "-")));
        write_private(&path, &text);
        cases.push((
            what,
            path,
            Vec::new(),
            vec!["orders".into()],
            2,
            "config file",
        ));
    }

    for (what, config, env, command, exit, says) in &cases {
        for (level, level_flags, rust_log) in LEVELS {
            for json in [false, true] {
                if *what == "portal answers 500" {
                    // Every attempt of every call fails (one retry each).
                    f.portal.clear_faults();
                    for method in [
                        "getObject",
                        "getSslCertificateRequests",
                        "getSslRequestStatuses",
                        "resendEmail",
                        "getSecurityCertificates",
                        "createObject",
                    ] {
                        f.portal.inject(method, Fault::InternalError, 100);
                    }
                }
                let command: Vec<&str> = command.iter().map(String::as_str).collect();
                let label = format!("{what}, {level}, json={json}");
                let portal_calls = f.portal.requests().len();
                let run = f.run(
                    &label,
                    config,
                    env,
                    rust_log,
                    &flags(level_flags, json, &command),
                );
                assert_eq!(run.code, Some(*exit), "{}", run.all());
                let output = format!("{}{}", String::from_utf8_lossy(&run.stdout), run.stderr());
                assert!(output.contains(says), "{says}: {}", run.all());
                f.assert_clean(&run);
                if says.contains("API token") || says.contains("Internal") {
                    assert!(
                        f.portal.requests().len() > portal_calls,
                        "the portal was asked: {}",
                        run.all()
                    );
                }
            }
        }
    }
    f.portal.clear_faults();
    let (_, commands) = f.assert_children_clean();
    assert!(commands > 0);
    if f.home.default_db().exists() {
        f.assert_database_clean();
    }
    f.assert_private_files();
}

// ---------------------------------------------------------------------------------------
// File modes
// ---------------------------------------------------------------------------------------

/// What fulfill writes — the database folder, the database, its -wal and -shm, the lock
/// file — is 0600 (folders 0700) under umask 022 and even under umask 000, also with
/// `--db` in a folder that does not exist yet. No other file is written.
#[test]
fn every_file_fulfill_writes_is_private() {
    let Some(mut f) = Fixture::new() else { return };
    let config = f.config(
        PortalAuth::Cmd(API_KEY),
        MailAuth::PasswordCmd(IMAP_PASSWORD),
    );
    for umask in ["022", "000"] {
        let order = f.order();
        let id = order.id.to_string();
        let db = f
            .home
            .path()
            .join(format!("umask-{umask}/nested/records.db"));
        let db_arg = db.to_string_lossy().into_owned();
        // A resend-and-import, a poll and an import: every command that writes.
        let run = f.run_with_umask(
            umask,
            "files",
            &config,
            &[],
            false,
            &[
                "--db",
                &db_arg,
                "resend-and-import",
                "--order",
                &id,
                "--timeout",
                "30s",
            ],
        );
        assert_eq!(run.code, Some(0), "{}", run.all());
        let order = f.order();
        f.dovecot.append("INBOX", &order.mail);
        let run = f.run_with_umask(
            umask,
            "files",
            &config,
            &[],
            false,
            &["--db", &db_arg, "poll"],
        );
        assert_eq!(run.code, Some(0), "{}", run.all());
        let order = f.order();
        let file = f.aux.path().join(format!("mails/{}.eml", order.name));
        fs::write(&file, &order.mail).expect("mail file");
        let run = f.run_with_umask(
            umask,
            "files",
            &config,
            &[],
            false,
            &[
                "--db",
                &db_arg,
                "import",
                "--order",
                &order.id.to_string(),
                &file.to_string_lossy(),
            ],
        );
        assert_eq!(run.code, Some(0), "{}", run.all());
        let mut names: Vec<String> = assert_tree_private(f.home.path())
            .iter()
            .filter(|p| p.starts_with(f.home.path().join(format!("umask-{umask}"))))
            .filter(|p| !is_deployed_certificate(p, f.home.path()))
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["records.db", "records.db.lock"], "umask {umask}");
    }
    // The default place, under umask 022, and what the hook saw while fulfill ran.
    let order = f.order();
    let id = order.id.to_string();
    let run = f.run(
        "default db",
        &config,
        &[],
        false,
        &["resend-and-import", "--order", &id, "--timeout", "30s"],
    );
    assert_eq!(run.code, Some(0), "{}", run.all());
    let modes: Vec<PathBuf> = fs::read_dir(f.trace())
        .expect("trace")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "modes"))
        .collect();
    assert!(!modes.is_empty(), "the hook recorded modes");
    let mut names: Vec<String> = assert_tree_private(f.home.path())
        .iter()
        .filter(|p| p.starts_with(f.home.path().join(".local")))
        .filter(|p| !is_deployed_certificate(p, f.home.path()))
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["fulfill.db", "fulfill.db.lock"]);
    f.assert_private_files();
    f.assert_database_clean();
}

/// slcli's `~/.softlayer`: a key there is used when the file is 0600, refused when others
/// can read it, and a mistyped file is reported — never showing the key. No Dovecot needed.
#[test]
fn softlayer_file_key_leaks_nowhere() {
    let portal = LocalPortal::start(Account::new(731_442, PORTAL_USER, API_KEY));
    let home = Home::new();
    let softlayer = home.path().join(".softlayer");
    let needles = Needles::new(&home.path().join("no-keys"));
    let good = format!(
        "[softlayer]\nusername = {PORTAL_USER}\napi_key = {API_KEY}\nendpoint_url = {}\ntimeout = 5\n",
        portal.endpoint()
    );
    let cases = [
        ("0600", good.clone(), 0o600, 0, "[]"),
        ("0644", good, 0o644, 2, "chmod 600"),
        (
            "malformed",
            format!("[softlayer\nusername = {PORTAL_USER}\napi_key = \"{API_KEY}\n"),
            0o600,
            2,
            ".softlayer",
        ),
    ];
    for (what, text, mode, exit, says) in cases {
        write_private(&softlayer, &text);
        fs::set_permissions(&softlayer, fs::Permissions::from_mode(mode)).expect("chmod");
        for (level, level_flags, rust_log) in LEVELS {
            for json in [false, true] {
                let before = portal
                    .requests()
                    .iter()
                    .filter(|r| r.auth.is_valid())
                    .count();
                let mut cmd = home.fulfill();
                cmd.args(flags(level_flags, json, &["orders"]));
                if rust_log {
                    cmd.env("RUST_LOG", "trace");
                } else {
                    cmd.env_remove("RUST_LOG");
                }
                let output = cmd.output().expect("run fulfill");
                let run = Run {
                    label: format!("~/.softlayer {what}, {level}, json={json}"),
                    code: output.status.code(),
                    stdout: output.stdout,
                    stderr: output.stderr,
                };
                assert_eq!(run.code, Some(exit), "{}", run.all());
                let shown = format!("{}{}", String::from_utf8_lossy(&run.stdout), run.stderr());
                if json || exit != 0 {
                    assert!(shown.contains(says), "{says}: {}", run.all());
                }
                needles.assert_absent(&format!("stdout of {}", run.label), &run.stdout);
                needles.assert_absent(&format!("stderr of {}", run.label), &run.stderr);
                let after = portal
                    .requests()
                    .iter()
                    .filter(|r| r.auth.is_valid())
                    .count();
                assert_eq!(after > before, exit == 0, "authenticated: {}", run.all());
            }
        }
    }
}

/// The IBM Cloud API key of `[secrets_manager]`, and one IAM does not know.
const SM_API_KEY: &str = "canary-ibmcloudkey-2c7e9a41f0b3d86e5a";
const WRONG_SM_API_KEY: &str = "canary-badibmkey-0d5f83a2c9e1b7460f";

/// Secrets Manager: the API key (from the environment or `api_key_cmd`), the IAM tokens
/// and the private key never show, at the highest verbosity, on success and on every
/// failure path (a token expired mid-run, 500s, a refused key): not in the output, the
/// database, the events or the deploy hook's environment.
#[test]
fn secrets_manager_key_token_and_private_key_leak_nowhere() {
    use support::secrets_manager::{Fault as SmFault, LocalSecretsManager, Route};
    let sm = LocalSecretsManager::start();
    sm.add_api_key(SM_API_KEY);
    let home = Home::new();
    let root = pki::root("SM Secrets Root");
    let issuing = pki::intermediate("SM Secrets Issuing", &root);
    let keys = home.path().join("keys");
    fs::create_dir(&keys).unwrap();
    fs::write(home.path().join("root.pem"), &root.pem).unwrap();
    let certificate = |name: &str, from: i32| {
        let spec = pki::LeafSpec::new(&[name]).valid(pki::ymd(from, 1, 1), pki::ymd(2035, 1, 1));
        let leaf = pki::leaf(&spec, &issuing);
        let stem = format!("{name}-{from}");
        write_private(&keys.join(format!("{stem}.key")), &leaf.key_pem());
        fs::write(
            keys.join(format!("{stem}.csr")),
            pki::csr_pem(&leaf.key, Some(name), &[name]),
        )
        .unwrap();
        let file = home.path().join(format!("{stem}.pem"));
        fs::write(&file, format!("{}{}", leaf.pem, issuing.pem)).unwrap();
        file
    };
    let key_file = home.path().join("ibm-key");
    write_private(&key_file, &format!("{SM_API_KEY}\n"));
    let hook_env = home.path().join("hook-env.txt");
    let config = |api_key_cmd: bool| {
        let path = home.path().join(format!("config-{api_key_cmd}.toml"));
        let mut text = format!(
            "deploy_hook = \"env >> {}\"\n[keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n{}",
            hook_env.display(),
            keys.display(),
            home.path().join("root.pem").display(),
            sm.config_section()
        );
        if api_key_cmd {
            text.push_str(&format!("api_key_cmd = \"cat {}\"\n", key_file.display()));
        }
        write_private(&path, &text);
        path
    };
    let mut outputs = Vec::new();
    let mut run = |config: &Path, key: Option<&str>, file: &Path, code: i32| {
        let mut cmd = home.fulfill();
        cmd.arg("--config").arg(config).env("RUST_LOG", "trace");
        if let Some(key) = key {
            cmd.env("IBMCLOUD_API_KEY", key);
        }
        let output = cmd
            .args(["-vvv", "--json", "import"])
            .arg(file)
            .output()
            .unwrap();
        let all = [output.stdout.clone(), output.stderr.clone()].concat();
        assert_eq!(
            output.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&all)
        );
        outputs.push(all);
    };
    let with_env = config(false);
    run(
        &with_env,
        Some(SM_API_KEY),
        &certificate("www.example.com", 2025),
        0,
    );
    sm.inject(Route::Version, SmFault::ExpireTokens, 1);
    run(
        &with_env,
        Some(SM_API_KEY),
        &certificate("www.example.com", 2026),
        0,
    );
    sm.inject(Route::Create, SmFault::InternalError, 4);
    let other = certificate("other.example.com", 2025);
    run(&with_env, Some(SM_API_KEY), &other, 1);
    run(&with_env, Some(WRONG_SM_API_KEY), &other, 1);
    run(&config(true), None, &other, 0);
    assert_eq!(sm.secrets().len(), 2);

    let mut needles = Needles::new(&keys);
    // An EC key's PKCS#8 ends with its public point, which the certificate holds too: a
    // key's PEM line that is also a line of a certificate (public) is not a leak.
    let public: Vec<u8> = (fs::read_dir(home.path()).unwrap().flatten())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pem"))
        .flat_map(|e| fs::read(e.path()).unwrap())
        .collect();
    let public = String::from_utf8_lossy(&public).into_owned();
    needles.0.retain(|(name, needle)| {
        !(name.ends_with("(PEM line)") && public.contains(&*String::from_utf8_lossy(needle)))
    });
    needles.add_secret("Secrets Manager API key", SM_API_KEY.as_bytes());
    needles.add_secret("wrong Secrets Manager API key", WRONG_SM_API_KEY.as_bytes());
    let tokens = sm.issued_tokens();
    assert!(tokens.len() >= 4, "{tokens:?}");
    for token in &tokens {
        needles.add_secret("IAM token", token.as_bytes());
    }
    for (n, output) in outputs.iter().enumerate() {
        needles.assert_absent(&format!("the output of run {n}"), output);
    }
    let hook = fs::read(&hook_env).expect("the hook ran");
    needles.assert_absent("the deploy hook's environment", &hook);
    for entry in fs::read_dir(home.default_db().parent().unwrap())
        .unwrap()
        .flatten()
    {
        if entry.path().is_file() {
            needles.assert_absent(
                &entry.path().display().to_string(),
                &fs::read(entry.path()).unwrap(),
            );
        }
    }
    let db = open_db(&home.default_db());
    let events: Vec<String> = db
        .prepare("SELECT kind || ' ' || detail FROM events")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        events.iter().any(|e| e.starts_with("secret_failed")),
        "{events:?}"
    );
    needles.assert_absent("the events", events.join("\n").as_bytes());
}
