//! A private Dovecot 2.3 IMAP server for integration tests.
//!
//! Each [`Dovecot`] runs its own `dovecot` master from a config written into its own temp
//! dir, listening on loopback only: one IMAPS (implicit TLS) port on 127.0.0.1
//! ([`Dovecot::host`]) and one plain IMAP port that offers STARTTLS on 127.0.0.2
//! ([`Dovecot::starttls_host`]), both fresh free ports on every start. The plain port
//! refuses every login before STARTTLS, so a client that skipped STARTTLS cannot log in.
//! Its server certificate is self-signed, made here with rcgen (see [`ServerCert`]); tests
//! trust it through [`Dovecot::cert_pem_path`] (as a `ca_file`) or [`Dovecot::cert_sha256`]
//! (as a pin).
//!
//! Mail is delivered the way a CA's mail server delivers it: by IMAP `APPEND` (see
//! [`Dovecot::append`]). For benchmarks, [`Dovecot::fill_maildir`] writes Maildir files
//! directly, which Dovecot indexes on the next `SELECT`.
//!
//! If Dovecot is missing or cannot start, the constructors return `Err` — except when the
//! environment variable `CI` is `true`, where a missing server is a failure and they panic.
//! [`dovecot_or_skip`] turns the `Err` into a "skipped: dovecot not available" line.
//!
//! Facts this relies on (checked with Dovecot 2.3.19 on this project's machine kind):
//! - As root, the login process must not run as root and mail users must not have UID 0:
//!   the mail user gets the `dovecot` user's UID/GID, the login user is `dovenull`.
//! - Every folder above the config and Maildir must be traversable by the `dovecot` user.
//! - The machine's PID 1 does not reap orphans: a dead Dovecot master stays a zombie, which
//!   `dovecot` itself takes for a running master ("Dovecot is already running with PID"),
//!   so a stale `master.pid` is removed here before a restart.
//! - Dovecot keeps the stdout/stderr it was started with; they go to a file here, not to the
//!   test's pipes (a capturing test would otherwise wait forever).
//! - Dovecot treats a connection whose remote IP equals its local IP as "secured" (so
//!   127.0.0.1 to 127.0.0.1): there, LOGIN in plain text is *accepted* despite
//!   `disable_plaintext_auth = yes` and `ssl = required` (the log line says `secured`
//!   instead of `TLS`). Hence the plain port listens on 127.0.0.2: a client connecting to
//!   it comes from 127.0.0.1 (Linux picks the loopback route's source address), the
//!   connection is not "secured", the greeting says `LOGINDISABLED` and a login before
//!   STARTTLS is refused ("Plaintext authentication disabled").
//! - With `verbose_proctitle = yes` an `imap` process is titled `dovecot/imap [USER IP CMD]`
//!   while a command runs, so `[... IDLE]` while its client waits in IDLE: how a test knows
//!   a client is waiting before it delivers mail ([`Dovecot::is_idling`],
//!   [`deliver_when_idle`]), instead of sleeping for a guessed while.
//! - After a failed login Dovecot delays every next attempt from the same IP (2 s, 4 s, ...
//!   up to 15 s, its "auth penalty"): turned off here, so a refused login costs ~0.5 s.
//! - Stopped right after its start, the master lingers ~5 s; `stop()` does not wait for it
//!   once the processes that touch mail have exited (see [`Dovecot::stop`]).
//! - XOAUTH2 ([`Options::oauth2`]): the Debian package's auth process has the oauth2 passdb
//!   and the XOAUTH2/OAUTHBEARER mechanisms built in (`dovecot --build-options` does not
//!   list it). With `introspection_mode = post` it POSTs `token=...` to the endpoint and
//!   logs in the user if the JSON answer has `active: true` and the same `username`; the
//!   user's UID and home still come from the passwd-file userdb. A refused token gets the
//!   continuation `+ <base64 {"status":"401","schemes":"bearer","scope":"mail"}>` and,
//!   whatever the client answers to it, `NO [AUTHENTICATIONFAILED]`.
//!
//! Include it with `#[allow(dead_code)] #[path = "support/dovecot.rs"] mod dovecot;` (or as
//! a submodule of `tests/support/mod.rs`, whose `#![allow(dead_code)]` covers it): no test
//! uses every helper.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use imap::types::Flag;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

// The one way tests start a child process (here `kill`, `dovecot`, `doveadm`): without the
// environment fulfill reads. Declared here, not in `tests/support/mod.rs` (which re-exports
// it as `support::env`), because some tests include this file on its own.
#[path = "env.rs"]
pub mod env;

/// The IMAP session type the helpers hand out (TLS over TCP, IDLE-capable).
pub type ImapSession = imap::Session<native_tls::TlsStream<TcpStream>>;
/// An IMAP client before login, over TLS.
pub type ImapClient = imap::Client<native_tls::TlsStream<TcpStream>>;

/// The mail user's login name.
pub const USER: &str = "fulfill-test";
/// The mail user's password.
pub const PASSWORD: &str = "Dovecot-Test-Pa55";
/// The name the server certificate is made for (besides the IPs of [`IMAPS_HOST`] and
/// [`STARTTLS_HOST`]).
pub const TLS_NAME: &str = "localhost";
/// Where the IMAPS (implicit TLS) port listens.
pub const IMAPS_HOST: &str = "127.0.0.1";
/// Where the plain IMAP port (STARTTLS) listens: another loopback address than the one
/// clients connect from, so Dovecot does not count the connection as secured (see above).
pub const STARTTLS_HOST: &str = "127.0.0.2";
/// How long a start may take before it counts as failed.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `stop()` waits after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `stop()` lets the master finish once its mail processes exited.
pub const STOP_GRACE: Duration = Duration::from_millis(500);
/// The Dovecot processes that read or write the mail store: `stop()` lets them finish.
const MAIL_PROCESSES: [&str; 7] = [
    "imap",
    "indexer",
    "indexer-worker",
    "imap-hibernate",
    "doveadm-server",
    "lmtp",
    "dict",
];
/// Read/write timeout of the helpers' own IMAP connections: no helper waits forever.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Environment variable that overrides where the `dovecot` binary is.
pub const BINARY_ENV: &str = "FULFILL_TEST_DOVECOT";
/// Set to 1 to keep the temp dir (config, log, Maildir) of a Dovecot dropped while a test
/// panics; its path is printed to stderr.
pub const KEEP_ENV: &str = "FULFILL_TEST_KEEP_DOVECOT";

// ---------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------

/// Which server certificate Dovecot presents. All are self-signed (their own trust anchor)
/// with a fresh ECDSA P-256 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCert {
    /// CN `localhost`, SAN DNS `localhost` and IPs 127.0.0.1 and 127.0.0.2 (both ports), valid
    /// from a day ago for a year.
    Localhost,
    /// Valid now, but for this DNS name only (CN and the only SAN): a client that checks
    /// the name `localhost` or the server's IP against it must refuse it.
    OtherName(String),
    /// `localhost` and the IPs but expired (valid 2020-01-01 to 2021-01-01).
    Expired,
    /// `localhost` and the IPs but not valid before 2090-01-01.
    NotYetValid,
}

/// A certificate made by [`make_cert`].
#[derive(Debug, Clone)]
pub struct TestCert {
    pub kind: ServerCert,
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    /// SHA-256 of `der`, lowercase hex without separators.
    pub sha256: String,
}

/// Makes a self-signed server certificate of the given kind (a new key every call).
pub fn make_cert(kind: &ServerCert) -> TestCert {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose,
    };
    use time::{Duration as TimeDuration, OffsetDateTime};

    let (name, with_ip) = match kind {
        ServerCert::OtherName(name) => (name.clone(), false),
        _ => (TLS_NAME.to_string(), true),
    };
    let mut sans = vec![name.clone()];
    if with_ip {
        sans.push(IMAPS_HOST.to_string());
        sans.push(STARTTLS_HOST.to_string());
    }
    let mut params = CertificateParams::new(sans).expect("valid certificate names");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "fulfill test Dovecot");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = OffsetDateTime::now_utc();
    (params.not_before, params.not_after) = match kind {
        ServerCert::Expired => (
            rcgen::date_time_ymd(2020, 1, 1),
            rcgen::date_time_ymd(2021, 1, 1),
        ),
        ServerCert::NotYetValid => (
            rcgen::date_time_ymd(2090, 1, 1),
            rcgen::date_time_ymd(2091, 1, 1),
        ),
        _ => (now - TimeDuration::days(1), now + TimeDuration::days(365)),
    };
    let key = KeyPair::generate().expect("generate a P-256 key");
    let cert = params
        .self_signed(&key)
        .expect("self-sign the test certificate");
    let der = cert.der().to_vec();
    TestCert {
        kind: kind.clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        sha256: hex::encode(Sha256::digest(&der)),
        der,
    }
}

// ---------------------------------------------------------------------------------------
// Options, start, skip
// ---------------------------------------------------------------------------------------

/// How to start a [`Dovecot`]. `Options::default()` is the usual server.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server certificate.
    pub cert: ServerCert,
    /// The `dovecot` binary; default: `$FULFILL_TEST_DOVECOT`, `/usr/sbin/dovecot`, then `PATH`.
    pub binary: Option<PathBuf>,
    /// Whether a failure to start panics (CI) or returns `Err`; default: `CI` is `true`.
    pub ci: Option<bool>,
    /// Also offer XOAUTH2 and OAUTHBEARER, checked by Dovecot's oauth2 passdb against an
    /// in-process token introspection endpoint (see [`OAuth2`]); default: off, and the
    /// server offers password logins only.
    pub oauth2: Option<OAuth2>,
    /// `mail_max_userip_connections` for IMAP (Dovecot's default is 10): how many sessions
    /// one user may have from one address at once; a login past it is refused.
    pub max_userip_connections: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cert: ServerCert::Localhost,
            binary: None,
            ci: None,
            oauth2: None,
            max_userip_connections: None,
        }
    }
}

/// XOAUTH2/OAUTHBEARER for [`USER`], as Gmail or Office 365 offer it: the server does not
/// know the token, it asks an OAuth 2 authorization server whether the token is active
/// (RFC 7662 token introspection) and for whom. Here that server is a tiny HTTP endpoint
/// on 127.0.0.1 run by the test process ([`Introspection`]), so a test can count the
/// questions and see which tokens reached it.
///
/// Password logins keep working (the helpers use them): the passwd-file passdb answers
/// only PLAIN/LOGIN, the oauth2 passdb only XOAUTH2/OAUTHBEARER, so the password is never
/// a valid token and a token never a valid password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2 {
    /// The one access token the endpoint calls active (for [`USER`]); every other token is
    /// `{"active": false}`. Changeable later with [`Introspection::set_valid_token`].
    pub valid_token: String,
}

impl OAuth2 {
    pub fn token(valid_token: &str) -> OAuth2 {
        OAuth2 {
            valid_token: valid_token.to_string(),
        }
    }
}

/// Whether the environment says this is CI (`CI=true`), where a missing server fails.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Starts the usual Dovecot, or prints "skipped: dovecot not available: REASON" to stderr
/// and returns `None` (outside CI; under `CI=true` a failure panics). Use as
/// `let Some(dovecot) = dovecot_or_skip() else { return };`.
pub fn dovecot_or_skip() -> Option<Dovecot> {
    dovecot_or_skip_with(Options::default())
}

/// [`dovecot_or_skip`] with options (e.g. another certificate).
pub fn dovecot_or_skip_with(options: Options) -> Option<Dovecot> {
    match Dovecot::start_with(options) {
        Ok(dovecot) => Some(dovecot),
        Err(reason) => {
            eprintln!("skipped: dovecot not available: {reason}");
            None
        }
    }
}

/// Who the server's processes and the mail user run as.
#[derive(Debug, Clone)]
struct Identity {
    root: bool,
    mail_uid: u32,
    mail_gid: u32,
    login_user: String,
    internal_user: String,
    internal_group: String,
}

impl Identity {
    fn detect() -> Result<Identity, String> {
        let me = fs::metadata("/proc/self").map_err(|e| format!("cannot read /proc/self: {e}"))?;
        if me.uid() == 0 {
            let (uid, gid) = passwd_entry_by_name("dovecot")
                .ok_or("there is no `dovecot` user in /etc/passwd")?;
            if passwd_entry_by_name("dovenull").is_none() {
                return Err("there is no `dovenull` user in /etc/passwd".into());
            }
            Ok(Identity {
                root: true,
                mail_uid: uid,
                mail_gid: gid,
                login_user: "dovenull".into(),
                internal_user: "dovecot".into(),
                internal_group: group_name_by_gid(gid).unwrap_or_else(|| "dovecot".into()),
            })
        } else {
            let user = user_name_by_uid(me.uid())
                .or_else(|| std::env::var("USER").ok())
                .ok_or("cannot find the current user's name")?;
            let group =
                group_name_by_gid(me.gid()).ok_or("cannot find the current user's group name")?;
            Ok(Identity {
                root: false,
                mail_uid: me.uid(),
                mail_gid: me.gid(),
                login_user: user.clone(),
                internal_user: user,
                internal_group: group,
            })
        }
    }
}

fn colon_file_lines(path: &str) -> Vec<Vec<String>> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

fn passwd_entry_by_name(name: &str) -> Option<(u32, u32)> {
    colon_file_lines("/etc/passwd")
        .into_iter()
        .find(|f| f.len() > 3 && f[0] == name)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
}

fn user_name_by_uid(uid: u32) -> Option<String> {
    colon_file_lines("/etc/passwd")
        .into_iter()
        .find(|f| f.len() > 2 && f[2] == uid.to_string())
        .map(|f| f[0].clone())
}

fn group_name_by_gid(gid: u32) -> Option<String> {
    colon_file_lines("/etc/group")
        .into_iter()
        .find(|f| f.len() > 2 && f[2] == gid.to_string())
        .map(|f| f[0].clone())
}

fn find_binary(name: &str, env: &str, fixed: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let candidates = fixed.iter().map(PathBuf::from).chain(
        std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(name))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    candidates
        .into_iter()
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Picks a free port on each host (bound together, then released), in order.
fn free_ports(hosts: &[&str]) -> Result<Vec<u16>, String> {
    let listeners = hosts
        .iter()
        .map(|host| TcpListener::bind((*host, 0)).map_err(|e| format!("cannot bind {host}:0: {e}")))
        .collect::<Result<Vec<TcpListener>, String>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect())
}

/// `host:port` as a socket address (`host` is one of the IPv4 literals above).
fn socket_addr(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(host.parse().expect("an IP address literal"), port)
}

// ---------------------------------------------------------------------------------------
// Processes (no libc: /proc and the `kill` command)
// ---------------------------------------------------------------------------------------

/// (state, session id) of a process, from /proc/PID/stat.
fn proc_state(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // state ppid pgrp session ...
    Some((
        fields.first()?.chars().next()?,
        fields.get(3)?.parse().ok()?,
    ))
}

/// Alive = exists and is not a zombie (PID 1 here does not reap orphans).
pub fn alive(pid: u32) -> bool {
    proc_state(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// The live processes of a Dovecot: the master daemonises with setsid(), so they are all in
/// the session whose id is the master's pid (also after the master died).
fn session_members(sid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            proc_state(pid)
                .is_some_and(|(state, sid_of)| sid_of == sid && state != 'Z' && state != 'X')
        })
        .collect()
}

fn proc_name(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Whether an `imap` process's title says it is in IDLE. With `verbose_proctitle = yes`
/// Dovecot titles it `dovecot/imap [USER IP COMMAND]` while a command runs, and IDLE runs
/// until the client sends DONE.
fn imap_process_in_idle(pid: u32) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let title = String::from_utf8_lossy(&cmdline);
    let title = title.split('\0').next().unwrap_or_default();
    title
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .is_some_and(|(state, _)| state.split_whitespace().any(|word| word == "IDLE"))
}

fn send_signal(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = env::command("kill")
        .arg("-s")
        .arg(signal)
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

// ---------------------------------------------------------------------------------------
// The OAuth 2 token introspection endpoint (for XOAUTH2)
// ---------------------------------------------------------------------------------------

/// What the endpoint knows and saw.
#[derive(Debug, Default)]
struct IntrospectionState {
    valid_token: String,
    /// Every token asked about, in order (a token never seen here never reached Dovecot's
    /// passdb, so it was not what the client logged in with).
    seen: Vec<String>,
    /// Requests it could not read a token from.
    bad_requests: usize,
}

/// A minimal RFC 7662 token introspection endpoint on 127.0.0.1 (a thread of the test
/// process; `std` only), which Dovecot's oauth2 passdb asks about every XOAUTH2 login. It
/// answers `{"active": true, "username": USER}` for the valid token and
/// `{"active": false}` for anything else, one request per connection
/// (`Connection: close`), and remembers every token it was asked about.
pub struct Introspection {
    addr: SocketAddr,
    state: Arc<Mutex<IntrospectionState>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("url", &self.url())
            .finish()
    }
}

impl Introspection {
    fn start(valid_token: &str) -> Result<Introspection, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot bind the token introspection endpoint: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let state = Arc::new(Mutex::new(IntrospectionState {
            valid_token: valid_token.to_string(),
            ..IntrospectionState::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            thread::Builder::new()
                .name("introspection".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        // One at a time is enough: Dovecot's oauth2 client opens one
                        // connection at a time by default (max_parallel_connections = 1).
                        if let Ok(stream) = stream {
                            let _ = introspect(stream, &state);
                        }
                    }
                })
                .map_err(|e| format!("cannot start the introspection thread: {e}"))?
        };
        Ok(Introspection {
            addr,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The `introspection_url` Dovecot is configured with.
    pub fn url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    /// How many introspection requests arrived (one per XOAUTH2 login attempt that
    /// reached the passdb).
    pub fn count(&self) -> usize {
        self.tokens().len()
    }

    /// The tokens asked about, in order.
    pub fn tokens(&self) -> Vec<String> {
        self.lock().seen.clone()
    }

    /// Requests that carried no token the endpoint could read (a sign that Dovecot's
    /// request format is not what this endpoint expects).
    pub fn bad_requests(&self) -> usize {
        self.lock().bad_requests
    }

    /// From now on only `token` is active (an expired token is one that is no longer).
    pub fn set_valid_token(&self, token: &str) {
        self.lock().valid_token = token.to_string();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IntrospectionState> {
        // A panic elsewhere must not hide what was recorded.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Introspection {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept() so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one HTTP request: the token is read from a form body (`token=...`, what
/// `introspection_mode = post` sends), an `Authorization: Bearer` header (`auth`), or a
/// `token`/`access_token` query parameter.
fn introspect(mut stream: TcpStream, state: &Mutex<IntrospectionState>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_len, path, bearer, content_length) = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(()); // the accept() wake-up, or a client that gave up
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let header = |name: &str| {
                    request
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
                };
                let bearer = header("authorization").and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                        .map(str::to_string)
                });
                let length = header("content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                break (len, request.path.unwrap_or("").to_string(), bearer, length);
            }
            Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => continue,
            _ => return Err(std::io::Error::other("bad HTTP request")),
        }
    };
    while buf.len() < head_len + content_length.min(64 * 1024) {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_len..]).into_owned();
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let token = form_value(&body, "token")
        .or(bearer)
        .or_else(|| form_value(query, "token"))
        .or_else(|| form_value(query, "access_token"));
    let answer = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        match token {
            Some(token) => {
                let active = token == state.valid_token;
                state.seen.push(token);
                if active {
                    format!("{{\"active\": true, \"username\": \"{USER}\"}}")
                } else {
                    "{\"active\": false}".to_string()
                }
            }
            None => {
                state.bad_requests += 1;
                "{\"active\": false}".to_string()
            }
        }
    };
    // 200 also for an inactive token: RFC 7662 §2.2 says so, and Dovecot then reports a
    // refused login rather than an internal failure ("Temporary authentication failure").
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    stream.flush()
}

/// The value of `name` in `a=1&b=2` (application/x-www-form-urlencoded), decoded.
fn form_value(form: &str, name: &str) -> Option<String> {
    form.trim()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(value))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

/// A running private Dovecot. Dropping it stops the server and removes its temp dir.
pub struct Dovecot {
    // Fields drop after `Drop::drop` stopped the server, so the dir outlives it.
    dir: TempDir,
    binary: PathBuf,
    identity: Identity,
    cert: TestCert,
    cert_path: PathBuf,
    key_path: PathBuf,
    imaps_port: u16,
    imap_port: u16,
    master_pid: Option<u32>,
    starts: u32,
    last_start: Duration,
    /// The token endpoint when XOAUTH2 is on; it keeps its port across restarts.
    introspection: Option<Introspection>,
    /// [`Options::max_userip_connections`].
    max_userip_connections: Option<u32>,
}

impl std::fmt::Debug for Dovecot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dovecot")
            .field("dir", &self.dir.path())
            .field("imaps_port", &self.imaps_port)
            .field("imap_port", &self.imap_port)
            .field("master_pid", &self.master_pid)
            .field("cert", &self.cert.kind)
            .field(
                "introspection",
                &self.introspection.as_ref().map(|i| i.url()),
            )
            .finish()
    }
}

impl Dovecot {
    /// Starts the usual server (certificate for `localhost` and its IPs). `Err` says why it
    /// could not; under `CI=true` that panics instead.
    pub fn start() -> Result<Dovecot, String> {
        Dovecot::start_with(Options::default())
    }

    /// Starts a server presenting another kind of certificate (for negative TLS tests).
    pub fn start_with_cert(cert: ServerCert) -> Result<Dovecot, String> {
        Dovecot::start_with(Options {
            cert,
            ..Options::default()
        })
    }

    /// Starts a server with the given options.
    pub fn start_with(options: Options) -> Result<Dovecot, String> {
        let ci = options.ci.unwrap_or_else(in_ci);
        match Dovecot::try_start(options) {
            Ok(dovecot) => Ok(dovecot),
            Err(reason) if ci => panic!(
                "a private Dovecot is required under CI=true but could not be started: {reason}\n\
                 (install it with `apt-get install -y dovecot-imapd`)"
            ),
            Err(reason) => Err(reason),
        }
    }

    fn try_start(options: Options) -> Result<Dovecot, String> {
        let binary = match options.binary {
            Some(binary) => binary,
            None => {
                find_binary("dovecot", BINARY_ENV, &["/usr/sbin/dovecot"]).ok_or_else(|| {
                    format!("no `dovecot` binary (not in /usr/sbin, PATH or ${BINARY_ENV})")
                })?
            }
        };
        if !binary.is_file() {
            return Err(format!("no dovecot binary at {}", binary.display()));
        }
        let identity = Identity::detect()?;
        let dir = make_temp_dir(&identity)?;
        let cert = make_cert(&options.cert);
        let max_userip_connections = options.max_userip_connections;
        let introspection = options
            .oauth2
            .map(|oauth2| Introspection::start(&oauth2.valid_token))
            .transpose()?;
        let mut dovecot = Dovecot {
            cert_path: PathBuf::new(),
            key_path: PathBuf::new(),
            dir,
            binary,
            identity,
            cert,
            imaps_port: 0,
            imap_port: 0,
            master_pid: None,
            starts: 0,
            last_start: Duration::ZERO,
            introspection,
            max_userip_connections,
        };
        dovecot.prepare_dir()?;
        dovecot.write_cert()?;
        dovecot.launch()?;
        Ok(dovecot)
    }

    fn prepare_dir(&self) -> Result<(), String> {
        let root = self.dir.path();
        let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
        for sub in ["run", "state"] {
            let path = root.join(sub);
            fs::create_dir_all(&path).map_err(|e| io("create dir", e))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(|e| io("chmod", e))?;
        }
        for sub in ["mail", "home"] {
            let path = root.join(sub);
            fs::create_dir_all(&path).map_err(|e| io("create dir", e))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(|e| io("chmod", e))?;
            self.chown(&path)?;
        }
        let home = self.home_path();
        fs::create_dir_all(&home).map_err(|e| io("create home", e))?;
        self.chown(&home)?;
        let passwd = format!(
            "{USER}:{{PLAIN}}{PASSWORD}:{}:{}::{}\n",
            self.identity.mail_uid,
            self.identity.mail_gid,
            home.display()
        );
        write_file(&root.join("passwd"), passwd.as_bytes(), 0o644)
    }

    fn chown(&self, path: &Path) -> Result<(), String> {
        if self.identity.root {
            std::os::unix::fs::chown(
                path,
                Some(self.identity.mail_uid),
                Some(self.identity.mail_gid),
            )
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Writes the current certificate and key to new files (Dovecot reads them at start).
    fn write_cert(&mut self) -> Result<(), String> {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        self.cert_path = self.dir.path().join(format!("server-cert-{n}.pem"));
        self.key_path = self.dir.path().join(format!("server-key-{n}.pem"));
        write_file(&self.cert_path, self.cert.cert_pem.as_bytes(), 0o644)?;
        write_file(&self.key_path, self.cert.key_pem.as_bytes(), 0o600)
    }

    fn config(&self) -> String {
        let d = self.dir.path().display();
        let id = &self.identity;
        let mut conf = format!(
            "# Written by tests/support/dovecot.rs: a private test server.\n\
             protocols = imap\n\
             listen = {imaps_host} {starttls_host}\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             auth_verbose = yes\n\
             verbose_proctitle = yes\n\
             auth_failure_delay = 0\n\
             default_login_user = {login}\n\
             default_internal_user = {internal}\n\
             default_internal_group = {group}\n\
             first_valid_uid = {uid}\n\
             first_valid_gid = {gid}\n\
             ssl = required\n\
             ssl_cert = <{cert}\n\
             ssl_key = <{key}\n\
             disable_plaintext_auth = yes\n\
             mail_location = maildir:{d}/mail/%u\n\
             {passdbs}\
             userdb {{\n  driver = passwd-file\n  args = {d}/passwd\n}}\n\
             service imap-login {{\n\
             \x20 inet_listener imap {{\n    address = {starttls_host}\n    port = {imap}\n  }}\n\
             \x20 inet_listener imaps {{\n    address = {imaps_host}\n    port = {imaps}\n    ssl = yes\n  }}\n",
            imaps_host = IMAPS_HOST,
            starttls_host = STARTTLS_HOST,
            login = id.login_user,
            internal = id.internal_user,
            group = id.internal_group,
            uid = id.mail_uid.max(1),
            gid = id.mail_gid.max(1),
            cert = self.cert_path.display(),
            key = self.key_path.display(),
            imap = self.imap_port,
            imaps = self.imaps_port,
            passdbs = self.passdbs(),
        );
        if !id.root {
            conf.push_str("  chroot =\n"); // chroot needs root
        }
        conf.push_str("}\n");
        if let Some(limit) = self.max_userip_connections {
            conf.push_str(&format!(
                "protocol imap {{\n  mail_max_userip_connections = {limit}\n}}\n"
            ));
        }
        // No growing per-IP delay after failed logins (2 s, 4 s, ... 15 s before every
        // next attempt from 127.0.0.1): auth disables it when it cannot find this socket.
        conf.push_str("service anvil {\n  unix_listener anvil-auth-penalty {\n    path = anvil-auth-penalty-disabled\n  }\n");
        if !id.root {
            conf.push_str("  chroot =\n");
        }
        conf.push_str("}\n");
        conf
    }

    /// The `passdb` sections (and with XOAUTH2 the mechanisms), as config text.
    fn passdbs(&self) -> String {
        let d = self.dir.path().display();
        let passwd_file =
            format!("passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/passwd\n");
        if self.introspection.is_none() {
            return format!("{passwd_file}}}\n");
        }
        // `mechanisms` keeps each passdb to its own kind of secret: Dovecot 2.3 hands an
        // XOAUTH2 token to every passdb like a plain password, so without it the password
        // would log in through XOAUTH2 too (and a PLAIN login would cost an introspection).
        // The user still comes from the passwd-file userdb (UID, home).
        format!(
            "auth_mechanisms = plain login xoauth2 oauthbearer\n\
             {passwd_file}  mechanisms = plain login\n}}\n\
             passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}\n",
            self.oauth2_conf_path().display()
        )
    }

    /// Dovecot's oauth2 passdb settings (`dovecot-oauth2.conf.ext`), pointing at the
    /// in-process endpoint. `post` sends the token as a form field `token=...`, as RFC 7662
    /// introspection does; the answer's `active` must be `true` and its `username` the
    /// user who logs in. Without a `tokeninfo_url`, Dovecot goes straight to introspection.
    fn oauth2_conf(&self, introspection: &Introspection) -> String {
        format!(
            "# Written by tests/support/dovecot.rs: tokens are checked by the test process.\n\
             introspection_mode = post\n\
             introspection_url = {}\n\
             force_introspection = yes\n\
             username_attribute = username\n\
             active_attribute = active\n\
             active_value = true\n\
             timeout_msecs = {}\n",
            introspection.url(),
            IO_TIMEOUT.as_millis()
        )
    }

    fn oauth2_conf_path(&self) -> PathBuf {
        self.dir.path().join("dovecot-oauth2.conf.ext")
    }

    /// Writes the config for fresh ports and starts the master; waits until both ports
    /// accept connections.
    fn launch(&mut self) -> Result<(), String> {
        let began = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ports = free_ports(&[IMAPS_HOST, STARTTLS_HOST])?;
            self.imaps_port = ports[0];
            self.imap_port = ports[1];
            write_file(&self.conf_path(), self.config().as_bytes(), 0o644)?;
            if let Some(introspection) = &self.introspection {
                let conf = self.oauth2_conf(introspection);
                write_file(&self.oauth2_conf_path(), conf.as_bytes(), 0o644)?;
            }
            // A master that died (killed, or crashed) leaves its pid file, and it may be a
            // zombie that `dovecot` takes for alive: remove the stale file.
            let pid_file = self.master_pid_path();
            if let Some(pid) = read_pid(&pid_file)
                && !alive(pid)
            {
                let _ = fs::remove_file(&pid_file);
            }
            let out_path = self.dir.path().join("dovecot.out");
            let out = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out_path)
                .map_err(|e| format!("open {}: {e}", out_path.display()))?;
            let err = out.try_clone().map_err(|e| e.to_string())?;
            let status = env::command(&self.binary)
                .arg("-c")
                .arg(self.conf_path())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .status()
                .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
            self.starts += 1;
            if !status.success() {
                let said = fs::read_to_string(&out_path).unwrap_or_default();
                if said.contains("Address already in use") && attempt < 5 {
                    let _ = fs::write(&out_path, b"");
                    continue;
                }
                return Err(format!(
                    "`{} -c {}` failed ({status}): {}\n--- dovecot.log ---\n{}",
                    self.binary.display(),
                    self.conf_path().display(),
                    said.trim(),
                    self.log()
                ));
            }
            break;
        }
        self.wait_ready(began)?;
        self.last_start = began.elapsed();
        Ok(())
    }

    fn wait_ready(&mut self, began: Instant) -> Result<(), String> {
        let deadline = began + READY_TIMEOUT;
        let mut ready = [false, false];
        loop {
            if self.master_pid.is_none_or(|pid| !alive(pid)) {
                self.master_pid = read_pid(&self.master_pid_path()).filter(|&pid| alive(pid));
            }
            let ports = [
                (IMAPS_HOST, self.imaps_port),
                (STARTTLS_HOST, self.imap_port),
            ];
            for (i, (host, port)) in ports.into_iter().enumerate() {
                if !ready[i] {
                    let addr = socket_addr(host, port);
                    ready[i] =
                        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
                }
            }
            if ready == [true, true] && self.master_pid.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "dovecot did not get ready within {READY_TIMEOUT:?} (master pid {:?}, IMAPS {IMAPS_HOST}:{} ready: {}, \
                     IMAP {STARTTLS_HOST}:{} ready: {})\n--- dovecot.out ---\n{}\n--- dovecot.log ---\n{}",
                    self.master_pid,
                    self.imaps_port,
                    ready[0],
                    self.imap_port,
                    ready[1],
                    fs::read_to_string(self.dir.path().join("dovecot.out")).unwrap_or_default(),
                    self.log()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server: SIGTERM to the master, which ends the processes that touch mail
    /// (`imap`, indexer, ...) cleanly; once those are gone and the master had
    /// [`STOP_GRACE`] more to exit by itself (or after [`STOP_TIMEOUT`] at most), SIGKILL to
    /// whatever of it is still alive. Does nothing if it is not running.
    ///
    /// Why not just wait for the master: stopped soon after its start, Dovecot 2.3 keeps its
    /// `imap-login`, `anvil` and `log` processes (and so the master) for about 5 s more.
    pub fn stop(&mut self) {
        let Some(pid) = self.master_pid.take() else {
            return;
        };
        if alive(pid) {
            send_signal(&[pid], "TERM");
        }
        let began = Instant::now();
        let mut workers_gone: Option<Instant> = None;
        while alive(pid) || !session_members(pid).is_empty() {
            let now = Instant::now();
            if now >= began + STOP_TIMEOUT {
                break;
            }
            let workers = session_members(pid)
                .into_iter()
                .filter(|&p| MAIL_PROCESSES.contains(&proc_name(p).as_str()))
                .count();
            if workers == 0 {
                let since = *workers_gone.get_or_insert(now);
                if now >= since + STOP_GRACE {
                    break;
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.kill_session(pid);
    }

    /// Kills the server now with SIGKILL, master and all its processes (open IMAP connections
    /// drop at once), as in a crash: nothing is flushed or cleaned up; `master.pid` stays.
    pub fn kill_hard(&mut self) {
        if let Some(pid) = self.master_pid.take() {
            self.kill_session(pid);
        }
    }

    fn kill_session(&self, pid: u32) {
        for _ in 0..50 {
            let mut left = session_members(pid);
            if alive(pid) && !left.contains(&pid) {
                left.push(pid);
            }
            if left.is_empty() {
                return;
            }
            send_signal(&left, "KILL");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server if it runs (gracefully) and starts it again on NEW ports (read
    /// them again after this), with the same mail store, user and certificate.
    /// Panics with the log if it cannot start.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch() {
            panic!("dovecot restart failed: {e}");
        }
    }

    /// Like [`Dovecot::restart`], presenting a new certificate of the given kind (the
    /// certificate paths and fingerprint change).
    pub fn restart_with_cert(&mut self, cert: ServerCert) {
        self.stop();
        self.cert = make_cert(&cert);
        self.write_cert().expect("write the new certificate");
        if let Err(e) = self.launch() {
            panic!("dovecot restart failed: {e}");
        }
    }

    /// The master's pid, while it runs.
    pub fn master_pid(&self) -> Option<u32> {
        self.master_pid.filter(|&pid| alive(pid))
    }

    /// Whether the master process is alive.
    pub fn is_running(&self) -> bool {
        self.master_pid.is_some_and(alive)
    }

    /// Whether a client of this server is in IDLE right now: the server has its IDLE
    /// command and will tell it of new mail (read from the `imap` processes' titles, see
    /// [`imap_process_in_idle`]). The sessions the helpers open for themselves never IDLE.
    pub fn is_idling(&self) -> bool {
        let Some(master) = self.master_pid() else {
            return false;
        };
        session_members(master)
            .into_iter()
            .any(|pid| proc_name(pid) == "imap" && imap_process_in_idle(pid))
    }

    /// Waits until a client of this server is in IDLE ([`Dovecot::is_idling`]), for at most
    /// `timeout`; whether one was. For a test that must deliver mail while a client waits,
    /// instead of sleeping and hoping it has started waiting by then.
    pub fn wait_for_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_idling() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    // --- what tests need to know ---------------------------------------------------------

    /// Where the IMAPS port listens: 127.0.0.1.
    pub fn host(&self) -> &'static str {
        IMAPS_HOST
    }

    /// Where the plain IMAP port (STARTTLS) listens: 127.0.0.2, which refuses a login that
    /// did not start TLS first.
    pub fn starttls_host(&self) -> &'static str {
        STARTTLS_HOST
    }

    /// The IMAPS (implicit TLS) port. Changes on every (re)start.
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
    }

    /// The plain IMAP port that offers STARTTLS, on [`Dovecot::starttls_host`]. Changes on
    /// every (re)start.
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    pub fn user(&self) -> &'static str {
        USER
    }

    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// The server certificate (PEM), usable as a `ca_file`.
    pub fn cert_pem_path(&self) -> &Path {
        &self.cert_path
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert.der
    }

    /// SHA-256 of the server certificate's DER, lowercase hex: a pin.
    pub fn cert_sha256(&self) -> &str {
        &self.cert.sha256
    }

    pub fn cert_kind(&self) -> &ServerCert {
        &self.cert.kind
    }

    /// The user's Maildir (INBOX is its root; folder `X` is `.X` in it).
    pub fn maildir_path(&self) -> PathBuf {
        self.dir.path().join("mail").join(USER)
    }

    /// The Maildir of a folder (`INBOX` or a Maildir++ subfolder).
    pub fn folder_path(&self, folder: &str) -> PathBuf {
        if folder.eq_ignore_ascii_case("INBOX") {
            self.maildir_path()
        } else {
            self.maildir_path().join(format!(".{folder}"))
        }
    }

    pub fn home_path(&self) -> PathBuf {
        self.dir.path().join("home").join(USER)
    }

    /// The temp dir with everything (config, log, certificates, Maildir).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.log")
    }

    fn master_pid_path(&self) -> PathBuf {
        self.dir.path().join("run").join("master.pid")
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// The token introspection endpoint of a server started with [`Options::oauth2`].
    /// Panics if XOAUTH2 is off.
    pub fn introspection(&self) -> &Introspection {
        self.introspection
            .as_ref()
            .expect("this Dovecot was started without Options::oauth2")
    }

    /// How long the last (re)start took until both ports accepted connections.
    pub fn last_start_time(&self) -> Duration {
        self.last_start
    }

    /// How many times `dovecot` was launched (including retries on busy ports).
    pub fn launches(&self) -> u32 {
        self.starts
    }

    // --- IMAP client side ------------------------------------------------------------------

    /// A TLS connector that trusts exactly this server's certificate as its root (name and
    /// validity are checked as usual: connect as `localhost` or the server's IP).
    pub fn tls_connector(&self) -> native_tls::TlsConnector {
        let cert = native_tls::Certificate::from_der(&self.cert.der).expect("DER certificate");
        native_tls::TlsConnector::builder()
            .add_root_certificate(cert)
            .build()
            .expect("TLS connector")
    }

    fn tcp(&self, host: &str, port: u16) -> std::io::Result<TcpStream> {
        let tcp = TcpStream::connect_timeout(&socket_addr(host, port), IO_TIMEOUT)?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(tcp)
    }

    /// A client on the IMAPS port, greeting read, not logged in; TLS verified with
    /// [`Dovecot::tls_connector`] for the name `localhost`.
    pub fn connect_imaps(&self) -> imap::Result<ImapClient> {
        self.connect_imaps_with(&self.tls_connector(), TLS_NAME)
    }

    /// As [`Dovecot::connect_imaps`] with the caller's connector and name.
    pub fn connect_imaps_with(
        &self,
        connector: &native_tls::TlsConnector,
        name: &str,
    ) -> imap::Result<ImapClient> {
        let tls = connector.connect(name, self.tcp(IMAPS_HOST, self.imaps_port)?)?;
        let mut client = imap::Client::new(tls);
        client.read_greeting()?;
        Ok(client)
    }

    /// A client on the plain port after `STARTTLS` (refused if the server does not offer
    /// it), not logged in; TLS verified as in [`Dovecot::connect_imaps`].
    pub fn connect_starttls(&self) -> imap::Result<ImapClient> {
        self.connect_starttls_with(&self.tls_connector(), TLS_NAME)
    }

    /// As [`Dovecot::connect_starttls`] with the caller's connector and name.
    pub fn connect_starttls_with(
        &self,
        connector: &native_tls::TlsConnector,
        name: &str,
    ) -> imap::Result<ImapClient> {
        // imap 3.0.0-alpha.15 has no public raw command before login, so the plain-text
        // part (greeting, CAPABILITY, STARTTLS) is spoken here.
        let mut tcp = self.tcp(STARTTLS_HOST, self.imap_port)?;
        let greeting = read_line(&mut tcp)?;
        if !greeting.starts_with("* OK") {
            return Err(imap::Error::Io(std::io::Error::other(format!(
                "greeting: {greeting}"
            ))));
        }
        let capabilities = command(&mut tcp, "S1", "CAPABILITY")?;
        if !capabilities
            .iter()
            .any(|l| l.starts_with("* CAPABILITY") && l.split_whitespace().any(|c| c == "STARTTLS"))
        {
            return Err(imap::Error::StartTlsNotAvailable);
        }
        command(&mut tcp, "S2", "STARTTLS")?;
        let tls = connector.connect(name, tcp)?;
        let mut client = imap::Client::new(tls);
        client.greeting_read = true; // none comes after STARTTLS
        Ok(client)
    }

    /// A logged-in session over IMAPS (verified TLS). Panics with the log on failure.
    pub fn login(&self) -> ImapSession {
        let client = self.connect_imaps().unwrap_or_else(|e| {
            panic!("IMAPS connect to {}: {e}\n{}", self.imaps_port, self.log())
        });
        client
            .login(USER, PASSWORD)
            .unwrap_or_else(|(e, _)| panic!("IMAPS login: {e}\n{}", self.log()))
    }

    /// A logged-in session over IMAP + STARTTLS. Panics with the log on failure.
    pub fn login_starttls(&self) -> ImapSession {
        let client = self.connect_starttls().unwrap_or_else(|e| {
            panic!(
                "STARTTLS connect to {STARTTLS_HOST}:{}: {e}\n{}",
                self.imap_port,
                self.log()
            )
        });
        client
            .login(USER, PASSWORD)
            .unwrap_or_else(|(e, _)| panic!("STARTTLS login: {e}\n{}", self.log()))
    }

    /// The helpers' own session: IMAPS, accepting exactly the current certificate by its
    /// SHA-256 (whatever its name or dates), so they work with every [`ServerCert`].
    fn admin(&self) -> ImapSession {
        let connector = native_tls::TlsConnector::builder()
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true)
            .build()
            .expect("TLS connector");
        let tcp = self.tcp(IMAPS_HOST, self.imaps_port).unwrap_or_else(|e| {
            panic!(
                "connect to dovecot on {}: {e}\n{}",
                self.imaps_port,
                self.log()
            )
        });
        let tls = connector
            .connect(TLS_NAME, tcp)
            .unwrap_or_else(|e| panic!("TLS with dovecot: {e}\n{}", self.log()));
        let der = tls
            .peer_certificate()
            .ok()
            .flatten()
            .and_then(|c| c.to_der().ok())
            .unwrap_or_default();
        assert_eq!(
            hex::encode(Sha256::digest(&der)),
            self.cert.sha256,
            "not our dovecot's certificate"
        );
        let mut client = imap::Client::new(tls);
        client
            .read_greeting()
            .unwrap_or_else(|e| panic!("IMAP greeting: {e}\n{}", self.log()));
        client
            .login(USER, PASSWORD)
            .unwrap_or_else(|(e, _)| panic!("IMAP login: {e}\n{}", self.log()))
    }

    /// Delivers one message to `folder` by IMAP APPEND (no flags) and returns its UID (from
    /// `APPENDUID`).
    pub fn append(&self, folder: &str, raw_message: &[u8]) -> u32 {
        self.append_with_flags(folder, raw_message, &[])
    }

    /// APPEND with flags and keywords (e.g. `["\\Seen", "$Forwarded"]`); returns the UID.
    pub fn append_with_flags(&self, folder: &str, raw_message: &[u8], flags: &[&str]) -> u32 {
        let mut session = self.admin();
        let uid = append_on(&mut session, folder, raw_message, flags)
            .unwrap_or_else(|e| panic!("APPEND to {folder}: {e}\n{}", self.log()));
        let _ = session.logout();
        uid
    }

    /// Delivers several messages over one connection, in order; returns their UIDs.
    pub fn append_many<I>(&self, folder: &str, messages: I) -> Vec<u32>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut session = self.admin();
        let uids = messages
            .into_iter()
            .map(|m| {
                append_on(&mut session, folder, m.as_ref(), &[])
                    .unwrap_or_else(|e| panic!("APPEND to {folder}: {e}\n{}", self.log()))
            })
            .collect();
        let _ = session.logout();
        uids
    }

    /// All flags and keywords of a message (`\Seen`, `$Label1`, ...; `\Recent` left out),
    /// or `None` if the folder has no message with that UID.
    pub fn flags(&self, folder: &str, uid: u32) -> Option<Vec<String>> {
        let mut session = self.admin();
        session
            .examine(folder)
            .unwrap_or_else(|e| panic!("EXAMINE {folder}: {e}\n{}", self.log()));
        let fetches = session
            .uid_fetch(uid.to_string(), "FLAGS")
            .unwrap_or_else(|e| panic!("UID FETCH {uid} FLAGS: {e}\n{}", self.log()));
        let flags = fetches.iter().find(|f| f.uid == Some(uid)).map(|f| {
            f.flags()
                .iter()
                .filter(|flag| **flag != Flag::Recent)
                .map(|flag| flag.to_string())
                .collect()
        });
        let _ = session.logout();
        flags
    }

    /// The keywords (non-system flags) of a message, or `None` if there is no such UID.
    pub fn keywords(&self, folder: &str, uid: u32) -> Option<Vec<String>> {
        self.flags(folder, uid)
            .map(|flags| flags.into_iter().filter(|f| !f.starts_with('\\')).collect())
    }

    /// Adds flags/keywords to a message (`UID STORE +FLAGS`), as a mail client would.
    pub fn add_flags(&self, folder: &str, uid: u32, flags: &[&str]) {
        let mut session = self.admin();
        session
            .select(folder)
            .unwrap_or_else(|e| panic!("SELECT {folder}: {e}\n{}", self.log()));
        session
            .uid_store(
                uid.to_string(),
                format!("+FLAGS.SILENT ({})", flags.join(" ")),
            )
            .unwrap_or_else(|e| panic!("UID STORE {uid}: {e}\n{}", self.log()));
        let _ = session.logout();
    }

    /// How many messages a folder has (by SELECT, which also indexes new Maildir files).
    pub fn count(&self, folder: &str) -> u32 {
        self.select_info(folder).exists
    }

    /// The folder's UIDVALIDITY.
    pub fn uidvalidity(&self, folder: &str) -> u32 {
        self.select_info(folder)
            .uid_validity
            .expect("UIDVALIDITY in SELECT")
    }

    /// What SELECT says about a folder.
    pub fn select_info(&self, folder: &str) -> imap::types::Mailbox {
        let mut session = self.admin();
        let mailbox = session
            .select(folder)
            .unwrap_or_else(|e| panic!("SELECT {folder}: {e}\n{}", self.log()));
        let _ = session.logout();
        mailbox
    }

    /// The UIDs in a folder, ascending.
    pub fn uids(&self, folder: &str) -> Vec<u32> {
        let mut session = self.admin();
        session
            .examine(folder)
            .unwrap_or_else(|e| panic!("EXAMINE {folder}: {e}\n{}", self.log()));
        let mut uids: Vec<u32> = session
            .uid_search("ALL")
            .unwrap_or_else(|e| panic!("UID SEARCH: {e}\n{}", self.log()))
            .into_iter()
            .collect();
        uids.sort_unstable();
        let _ = session.logout();
        uids
    }

    /// Creates a folder (IMAP CREATE).
    pub fn create_folder(&self, name: &str) {
        let mut session = self.admin();
        session
            .create(name)
            .unwrap_or_else(|e| panic!("CREATE {name}: {e}\n{}", self.log()));
        let _ = session.logout();
    }

    /// Deletes a folder and its messages (IMAP DELETE; not INBOX).
    pub fn delete_folder(&self, name: &str) {
        let mut session = self.admin();
        session
            .delete(name)
            .unwrap_or_else(|e| panic!("DELETE {name}: {e}\n{}", self.log()));
        let _ = session.logout();
    }

    /// Deletes and recreates a folder over IMAP (not INBOX): it comes back EMPTY with a new
    /// UIDVALIDITY (Dovecot keeps the last one it gave in `dovecot-uidvalidity` at the
    /// Maildir root and never hands the same out twice). Returns the new UIDVALIDITY.
    pub fn recreate_folder(&self, name: &str) -> u32 {
        self.delete_folder(name);
        self.create_folder(name);
        self.uidvalidity(name)
    }

    /// Sets a folder's UIDVALIDITY to `value` while the server runs, keeping its messages
    /// AND their UIDs (`doveadm mailbox update --uid-validity`). Panics if doveadm fails.
    pub fn set_uidvalidity(&self, folder: &str, value: u32) {
        let doveadm = find_binary(
            "doveadm",
            "FULFILL_TEST_DOVEADM",
            &["/usr/bin/doveadm", "/usr/sbin/doveadm"],
        )
        .expect("doveadm (dovecot-core) is needed for set_uidvalidity");
        let out = env::command(doveadm)
            .arg("-c")
            .arg(self.conf_path())
            .args([
                "mailbox",
                "update",
                "-u",
                USER,
                "--uid-validity",
                &value.to_string(),
                folder,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run doveadm");
        assert!(
            out.status.success(),
            "doveadm mailbox update failed ({}): {}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Rebuilds a folder as after a server migration or index loss: stops the server,
    /// removes the folder's `dovecot-uidlist` and index files (keeping the messages and
    /// `dovecot-keywords`), and restarts it on NEW ports. The messages are all still there,
    /// with a new UIDVALIDITY and newly assigned UIDs (1, 2, ... in directory order, so an
    /// old UID may now name another message); flags stay (they are in the file names).
    /// Returns the new UIDVALIDITY.
    pub fn rebuild_folder(&mut self, folder: &str) -> u32 {
        self.stop();
        let path = self.folder_path(folder);
        let entries =
            fs::read_dir(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "dovecot-uidlist" || name.starts_with("dovecot.index") {
                fs::remove_file(entry.path()).unwrap_or_else(|e| panic!("remove {name}: {e}"));
            }
        }
        if let Err(e) = self.launch() {
            panic!("dovecot restart failed: {e}");
        }
        self.uidvalidity(folder)
    }

    /// Writes `count` messages straight into the Maildir `cur/` of INBOX, as unseen mail
    /// Dovecot has not indexed yet; it indexes them on the next SELECT (first SELECT of
    /// 100 000 takes a while). `make_message(i)` gives message `i` (0-based), raw bytes.
    pub fn fill_maildir(&self, count: usize, make_message: impl FnMut(usize) -> Vec<u8>) {
        self.fill_maildir_folder("INBOX", count, make_message)
    }

    /// [`Dovecot::fill_maildir`] for a folder (created on disk if it does not exist).
    pub fn fill_maildir_folder(
        &self,
        folder: &str,
        count: usize,
        mut make_message: impl FnMut(usize) -> Vec<u8>,
    ) {
        let dir = self.folder_path(folder);
        for sub in ["", "cur", "new", "tmp"] {
            let path = dir.join(sub);
            if !path.exists() {
                fs::create_dir_all(&path)
                    .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
                fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
                    .expect("chmod maildir");
                self.chown(&path).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        if folder != "INBOX" {
            let marker = dir.join("maildirfolder");
            if !marker.exists() {
                write_file(&marker, b"", 0o600).unwrap_or_else(|e| panic!("{e}"));
                self.chown(&marker).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        let cur = dir.join("cur");
        let host = maildir_host();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        let pid = std::process::id();
        static BATCH: AtomicU64 = AtomicU64::new(0);
        let batch = BATCH.fetch_add(1, Ordering::Relaxed);
        let mut name = String::new();
        for i in 0..count {
            let message = make_message(i);
            name.clear();
            let _ = write!(
                name,
                "{}.M{}P{pid}Q{batch}_{i}.{host},S={}:2,",
                now.as_secs(),
                now.subsec_micros(),
                message.len()
            );
            let path = cur.join(&name);
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(&message))
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            self.chown(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            // Shown with the failing test's output.
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            eprintln!(
                "--- last lines of the test Dovecot's log ({}) ---\n{tail}",
                self.log_path().display()
            );
        }
        if thread::panicking() && std::env::var_os(KEEP_ENV).is_some_and(|v| v == "1") {
            self.dir.disable_cleanup(true);
            eprintln!("kept the test Dovecot's dir: {}", self.dir.path().display());
        }
    }
}

/// Delivers `mails` to `folder` from a thread of its own, as a CA's mail server would while
/// a client waits for them: each one (by APPEND, in order) once a client of the server is
/// in IDLE ([`Dovecot::is_idling`]). Not after a fixed delay: on a busy machine the client
/// may not be waiting yet, or may have been waiting for long. Holds the server only
/// weakly: once the test drops it, undelivered mail is given up (and said so on stderr).
pub fn deliver_when_idle(
    server: &Arc<Dovecot>,
    folder: &str,
    mails: Vec<Vec<u8>>,
) -> thread::JoinHandle<()> {
    let server = Arc::downgrade(server);
    let folder = folder.to_string();
    thread::Builder::new()
        .name("deliver when idle".into())
        .spawn(move || {
            let count = mails.len();
            for (i, mail) in mails.into_iter().enumerate() {
                loop {
                    let Some(dovecot) = server.upgrade() else {
                        eprintln!(
                            "deliver_when_idle: the server was dropped before a client waited \
                             in IDLE; {} of {count} mails undelivered",
                            count - i
                        );
                        return;
                    };
                    if dovecot.is_idling() {
                        dovecot.append(&folder, &mail);
                        break;
                    }
                    drop(dovecot);
                    thread::sleep(Duration::from_millis(10));
                }
            }
        })
        .expect("spawn the delivery thread")
}

fn append_on(
    session: &mut ImapSession,
    folder: &str,
    raw: &[u8],
    flags: &[&str],
) -> imap::Result<u32> {
    let appended = session
        .append(folder, raw)
        .flags(flags.iter().map(|f| Flag::from(*f)))
        .finish()?;
    // `UidSetMember` (imap-proto) is not re-exported by imap: read the single UID from its
    // Debug form, `Uid(N)`.
    let uid = match appended.uids.as_deref() {
        Some([member]) => format!("{member:?}")
            .strip_prefix("Uid(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|n| n.parse().ok()),
        _ => None,
    };
    Ok(uid.unwrap_or_else(|| panic!("APPEND answered no single APPENDUID: {:?}", appended.uids)))
}

/// Reads one CRLF-terminated line byte by byte (so nothing after it is consumed: the TLS
/// handshake follows STARTTLS's OK).
fn read_line(tcp: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if tcp.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        line.push(byte[0]);
        if line.len() > 64 * 1024 {
            return Err(std::io::Error::other("line too long"));
        }
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// Sends a tagged command in plain text; returns the untagged lines if it ends in OK.
fn command(tcp: &mut TcpStream, tag: &str, command: &str) -> imap::Result<Vec<String>> {
    tcp.write_all(format!("{tag} {command}\r\n").as_bytes())?;
    let mut lines = Vec::new();
    loop {
        let line = read_line(tcp)?;
        if let Some(status) = line.strip_prefix(tag).map(str::trim_start) {
            return if status.starts_with("OK") {
                Ok(lines)
            } else {
                Err(imap::Error::Io(std::io::Error::other(format!(
                    "{command}: {line}"
                ))))
            };
        }
        lines.push(line);
    }
}

/// The host part of Maildir file names: the hostname with `/` and `:` escaped.
fn maildir_host() -> String {
    let host =
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
    host.trim().replace('/', "\\057").replace(':', "\\072")
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    file.write_all(contents)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// The temp dir, 0755, in a place whose every parent the server's users can traverse
/// (`$TMPDIR` if so, else /tmp).
fn make_temp_dir(identity: &Identity) -> Result<TempDir, String> {
    let traversable = |dir: &Path| {
        dir.ancestors().all(|a| {
            fs::metadata(a).is_ok_and(|m| {
                let mode = m.permissions().mode();
                !identity.root
                    || mode & 0o001 != 0
                    || (m.uid() == identity.mail_uid && mode & 0o100 != 0)
            })
        })
    };
    let mut base = std::env::temp_dir();
    if !base.is_absolute() || !traversable(&base) {
        base = PathBuf::from("/tmp");
    }
    let dir = tempfile::Builder::new()
        .prefix("fdovecot-")
        .permissions(fs::Permissions::from_mode(0o755))
        .tempdir_in(&base)
        .map_err(|e| format!("cannot make a temp dir in {}: {e}", base.display()))?;
    // The umask may have narrowed the mode.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    if !traversable(dir.path()) {
        return Err(format!(
            "{} or a parent is not traversable by the dovecot user (missing +x)",
            dir.path().display()
        ));
    }
    Ok(dir)
}
