//! The IMAP session (imap + native-tls): connect, find new mail cheaply, fetch without
//! marking anything read, mark what was imported, and wait for new mail with IDLE.
//!
//! Facts it relies on (`docs/fulfillment-emails.md` §4): UIDVALIDITY changes must be
//! noticed; servers drop IDLE before 29 minutes (re-issue well before); hangs are the worst
//! failure of a cron poller, so every connect, read and write has a timeout; server
//! certificates are always verified (system roots, an extra `ca_file`, or a SHA-256 pin),
//! and there is no switch to turn that off.

mod stream;
mod structure;

use std::collections::BTreeSet;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imap::extensions::idle::WaitOutcome;
use sha2::{Digest, Sha256};

use self::stream::{Counted, ImapStream};
pub use self::stream::{ResponseLimits, TooLarge, Traffic};
pub use self::structure::{Described, DescribedAhead, Structure, StructureLimits};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Implicit TLS (port 993).
    Tls,
    /// Plain connect, then STARTTLS before anything else (port 143).
    StartTls,
}

#[derive(Debug, Clone)]
pub enum Credential {
    Password(Secret),
    /// An OAuth 2 access token for XOAUTH2 (Gmail and Office 365 refuse passwords).
    OAuth2Token(Secret),
}

/// What to do with a mail whose certificate was imported. Nothing is ever deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterImport {
    /// Set the keyword `$FulfillImported`.
    Flag,
    Seen,
    Move(FolderName),
    Nothing,
}

impl std::fmt::Display for AfterImport {
    /// As written in the config: "flag", "seen", "move:FOLDER", "none".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AfterImport::Flag => f.write_str("flag"),
            AfterImport::Seen => f.write_str("seen"),
            AfterImport::Move(folder) => write!(f, "move:{folder}"),
            AfterImport::Nothing => f.write_str("none"),
        }
    }
}

/// An IMAP mailbox name from the config (`folder`, `after_import = "move:..."`): never
/// empty, and without CR, LF or NUL, which would end a command line early (and let a
/// config value add commands of its own) or cannot be sent at all (RFC 3501 §9: `CHAR` is
/// %x01-7F, `TEXT-CHAR` excludes CR and LF). Checked when the config is read; every
/// command sends it as a quoted string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FolderName(String);

impl FolderName {
    pub fn new(name: &str) -> Result<FolderName, String> {
        if name.is_empty() {
            return Err("an empty folder name".into());
        }
        if name.contains(['\r', '\n', '\0']) {
            return Err(format!(
                "the folder name \"{}\" holds a line break or NUL, which IMAP cannot send",
                crate::text::printable(name)
            ));
        }
        Ok(FolderName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an IMAP quoted string (RFC 3501 §9 `quoted`): `\` and `"` escaped.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

impl std::fmt::Display for FolderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The keyword set on imported mails by `after_import = "flag"`.
pub const IMPORTED_KEYWORD: &str = "$FulfillImported";

/// The mailbox as a run uses it, resolved from `[mailbox]` (config/file.rs holds the
/// section as written).
#[derive(Debug, Clone)]
pub struct MailboxSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Extra trust anchors (PEM) for the server's certificate, besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// The name to verify the certificate against when connecting through a tunnel.
    pub tls_server_name: Option<String>,
    /// SHA-256 of the server certificate (DER), hex: accepted exactly that certificate.
    pub pin_sha256: Option<String>,
    pub username: String,
    pub credential: Credential,
    pub folder: FolderName,
    pub after_import: AfterImport,
    pub max_message_size: u64,
    pub connect_timeout: Duration,
    /// Limit on any one read or write on the socket.
    pub io_timeout: Duration,
    /// Only mail from these addresses is considered (server-side `FROM`); empty: all.
    pub senders: Vec<String>,
    /// Only mail received within this time is looked at.
    pub since: Duration,
    /// How often to look for new mail on servers without IDLE.
    pub poll_interval: Duration,
    /// Limit on a whole run (plus any wait the command was given).
    pub run_timeout: Duration,
}

impl MailboxSettings {
    /// "user@host:port": the `mailbox_state` key (two accounts on one server keep apart)
    /// and how logs name the mailbox.
    pub fn account(&self) -> String {
        format!("{}@{}:{}", self.username, self.host, self.port)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("cannot connect to {host}:{port}: {cause}")]
    Connect {
        host: String,
        port: u16,
        cause: String,
    },
    #[error(
        "TLS with {host} failed: {cause}. If the server uses a private CA, set [mailbox] ca_file; \
         through a tunnel, set tls_server_name; or pin its certificate with pin_sha256"
    )]
    Tls { host: String, cause: String },
    #[error(
        "the server certificate of {host} has SHA-256 {found}, not the pinned {expected}; refused"
    )]
    PinMismatch {
        host: String,
        found: String,
        expected: String,
    },
    #[error("{host} refused the login of '{username}': {server_says}")]
    LoginRefused {
        host: String,
        username: String,
        server_says: String,
    },
    #[error(
        "{host} refused the login of '{username}' by XOAUTH2: {server_says}{details}. The access \
         token from [mailbox] oauth2_token_cmd was not accepted: it may have expired or been \
         revoked, or be for another account or lack mail access. Make oauth2_token_cmd print a \
         fresh access token (not a refresh token) for '{username}'"
    )]
    TokenRefused {
        host: String,
        username: String,
        server_says: String,
        /// The server's XOAUTH2 error (a JSON object such as
        /// `{"status":"401","schemes":"bearer","scope":"mail"}`), as ` (details: ...)`.
        details: String,
    },
    #[error(
        "{host} has no STARTTLS; refusing to send the password in clear (use security = \"tls\")"
    )]
    NoStartTls { host: String },
    #[error(
        "IMAP {what} timed out after {seconds} s; the server is slow or the connection was lost"
    )]
    Timeout { what: String, seconds: u64 },
    #[error("IMAP {what} failed: {cause}")]
    Protocol { what: String, cause: String },
    /// The server answered NO or BAD: the connection is still good for other commands.
    #[error("IMAP {what} failed: {cause}")]
    Refused { what: String, cause: String },
    /// A COPY or MOVE answered `NO [TRYCREATE]` (RFC 3501 §6.4.7): the target folder does
    /// not exist.
    #[error("IMAP {what}: the folder {folder} does not exist on {host} ({server_says})")]
    MissingFolder {
        what: String,
        folder: FolderName,
        host: String,
        server_says: String,
    },
    /// The server sent more than [`ResponseLimits`] allow; the connection is given up.
    #[error("IMAP {what}: {cause}")]
    TooLarge { what: String, cause: TooLarge },
    #[error("cannot read ca_file {path}: {cause}")]
    CaFile { path: PathBuf, cause: String },
}

impl MailboxError {
    /// Whether the server sent more than the limits allow (the connection is then unusable).
    pub fn is_too_large(&self) -> bool {
        matches!(self, MailboxError::TooLarge { .. })
    }

    /// Whether the server refused the command (NO, BAD), as opposed to the connection
    /// failing: the session can go on with other commands.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            MailboxError::Refused { .. } | MailboxError::MissingFolder { .. }
        )
    }
}

/// What fetching one message found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Message(Vec<u8>),
    /// Longer than `max_message_size`: only its first `max_message_size + 1` bytes were
    /// read, and they were dropped.
    TooLarge,
    /// Not there any more (expunged since the search).
    Gone,
}

/// What SELECT tells about a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderStatus {
    pub uidvalidity: u32,
    pub uid_next: Option<u32>,
    pub exists: u32,
}

pub struct Session {
    imap: imap::Session<ImapStream>,
    traffic: Arc<Traffic>,
    host: String,
    io_timeout: Duration,
    max_message_size: u64,
    has_idle: bool,
    has_move: bool,
    /// Folders this session has seen exist (or created).
    known_folders: BTreeSet<FolderName>,
    /// What it connected with, to connect again when imap cannot read on (`reconnect`).
    settings: MailboxSettings,
    /// The folder selected last, its UIDVALIDITY and whether it was EXAMINEd (read-only),
    /// to select it again the same way after a reconnect.
    selected: Option<(FolderName, u32, bool)>,
}

/// What [`Session::ensure_folder`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderCheck {
    Exists,
    /// It did not exist and was created.
    Created,
}

struct XOAuth2<'a> {
    user: &'a str,
    token: &'a Secret,
    /// Whether the credentials went out already.
    sent: std::cell::Cell<bool>,
    /// The server's error challenge, if it sent one.
    error: std::cell::RefCell<Option<String>>,
}

impl<'a> XOAuth2<'a> {
    fn new(user: &'a str, token: &'a Secret) -> XOAuth2<'a> {
        XOAuth2 {
            user,
            token,
            sent: std::cell::Cell::new(false),
            error: std::cell::RefCell::new(None),
        }
    }
}

impl imap::Authenticator for XOAuth2<'_> {
    type Response = String;

    /// The first continuation (empty: no SASL-IR here) gets the XOAUTH2 string used by
    /// Gmail and Office 365. A refused token comes back as a second continuation holding a
    /// base64 JSON error, which the client must answer with an empty response before the
    /// server sends its NO (Google's XOAUTH2 protocol, as RFC 7628 §3.2.3 for
    /// OAUTHBEARER): sending the credentials again there would be a protocol error, and
    /// would put the token on the wire a second time for nothing.
    fn process(&self, challenge: &[u8]) -> String {
        if self.sent.replace(true) {
            *self.error.borrow_mut() = Some(printable(challenge));
            return String::new();
        }
        format!(
            "user={}\x01auth=Bearer {}\x01\x01",
            self.user,
            self.token.expose()
        )
    }
}

/// Server-sent text made safe to show in one line: printable ASCII only, at most 200
/// characters.
fn printable(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect();
    text.trim().to_string()
}

fn protocol(what: &str, io_timeout: Duration) -> impl Fn(imap::Error) -> MailboxError + '_ {
    move |error| match &error {
        imap::Error::Io(e) if e.get_ref().is_some_and(|inner| inner.is::<TooLarge>()) => {
            MailboxError::TooLarge {
                what: what.to_string(),
                cause: (e.get_ref())
                    .and_then(|inner| inner.downcast_ref::<TooLarge>())
                    .cloned()
                    .expect("checked above"),
            }
        }
        imap::Error::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            MailboxError::Timeout {
                what: what.to_string(),
                seconds: io_timeout.as_secs().max(1),
            }
        }
        imap::Error::No(_) | imap::Error::Bad(_) => MailboxError::Refused {
            what: what.to_string(),
            cause: error.to_string(),
        },
        _ => MailboxError::Protocol {
            what: what.to_string(),
            cause: error.to_string(),
        },
    }
}

impl Session {
    /// Connects, secures and logs in.
    pub fn connect(settings: &MailboxSettings) -> Result<Session, MailboxError> {
        let traffic = Arc::new(Traffic::default());
        let counted = Counted {
            tcp: open_tcp(settings)?,
            traffic: traffic.clone(),
        };
        let timeout = settings.io_timeout;

        let counted = match settings.security {
            Security::Tls => counted,
            Security::StartTls => starttls(counted, &settings.host, timeout)?,
        };
        let tls = handshake(settings, counted)?;
        let mut client = imap::Client::new(ImapStream::new(
            tls,
            settings.io_timeout,
            ResponseLimits::for_max_message_size(settings.max_message_size),
        ));
        if settings.security == Security::Tls {
            client
                .read_greeting()
                .map_err(protocol("greeting", timeout))?;
        }
        let refused = |(error, _client): (imap::Error, _)| MailboxError::LoginRefused {
            host: settings.host.clone(),
            username: settings.username.clone(),
            server_says: server_text(&error),
        };
        let mut imap = match &settings.credential {
            Credential::Password(password) => client
                .login(&settings.username, password.expose())
                .map_err(refused)?,
            Credential::OAuth2Token(token) => {
                let xoauth2 = XOAuth2::new(&settings.username, token);
                client
                    .authenticate("XOAUTH2", &xoauth2)
                    .map_err(|(error, _client)| MailboxError::TokenRefused {
                        host: settings.host.clone(),
                        username: settings.username.clone(),
                        // The sentence goes on after it: no "failed.. The".
                        server_says: server_text(&error).trim_end_matches('.').to_string(),
                        details: xoauth2
                            .error
                            .take()
                            .filter(|e| !e.is_empty())
                            .map(|e| format!(" (details: {e})"))
                            .unwrap_or_default(),
                    })?
            }
        };
        let capabilities = imap
            .capabilities()
            .map_err(protocol("CAPABILITY", timeout))?;
        let has_idle = capabilities.has_str("IDLE");
        let has_move = capabilities.has_str("MOVE");
        drop(capabilities);
        Ok(Session {
            imap,
            traffic,
            host: settings.host.clone(),
            io_timeout: timeout,
            max_message_size: settings.max_message_size,
            has_idle,
            has_move,
            known_folders: BTreeSet::new(),
            settings: settings.clone(),
            selected: None,
        })
    }

    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    pub fn has_idle(&self) -> bool {
        self.has_idle
    }

    /// Whether the server has MOVE (RFC 6851); without it `move:` copies and flags.
    pub fn has_move(&self) -> bool {
        self.has_move
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn select(&mut self, folder: &FolderName) -> Result<FolderStatus, MailboxError> {
        // imap quotes the name as `FolderName::quoted` does.
        let mailbox = self
            .imap
            .select(folder.as_str())
            .map_err(protocol(&format!("SELECT {folder}"), self.io_timeout))?;
        let status = folder_status("SELECT", folder, &mailbox)?;
        self.selected = Some((folder.clone(), status.uidvalidity, false));
        Ok(status)
    }

    /// Logs in again on a new connection and selects the folder selected before: for when
    /// imap stopped reading an answer halfway (one it could not parse), which leaves the
    /// rest of it on the old connection. The folder must have kept its UIDVALIDITY.
    fn reconnect(&mut self) -> Result<(), MailboxError> {
        use std::sync::atomic::Ordering::Relaxed;
        let fresh = Session::connect(&self.settings)?;
        // The byte counters go on where the old connection stopped.
        (fresh.traffic.read).fetch_add(self.traffic.read.load(Relaxed), Relaxed);
        (fresh.traffic.written).fetch_add(self.traffic.written.load(Relaxed), Relaxed);
        let old = std::mem::replace(self, fresh);
        let Some((folder, uidvalidity, read_only)) = old.selected.clone() else {
            return Ok(());
        };
        drop(old);
        let status = match read_only {
            true => self.examine(&folder)?,
            false => self.select(&folder)?,
        };
        if status.uidvalidity != uidvalidity {
            return Err(MailboxError::Protocol {
                what: format!("SELECT {folder} (connected again)"),
                cause: format!(
                    "UIDVALIDITY changed from {uidvalidity} to {} during the run; the next run \
                     looks at the folder again",
                    status.uidvalidity
                ),
            });
        }
        Ok(())
    }

    /// SELECT without changing anything (no \Recent cleared): for `check`, and the second
    /// connection of a large scan (`Session::describe_ahead`).
    pub fn examine(&mut self, folder: &FolderName) -> Result<FolderStatus, MailboxError> {
        let mailbox = self
            .imap
            .examine(folder.as_str())
            .map_err(protocol(&format!("EXAMINE {folder}"), self.io_timeout))?;
        let status = folder_status("EXAMINE", folder, &mailbox)?;
        self.selected = Some((folder.clone(), status.uidvalidity, true));
        Ok(status)
    }

    /// UIDs above `after_uid`, received on or after `since`, from one of `senders` if any:
    /// all narrowed by the server, so a run with nothing new costs the same whatever the
    /// size of the mailbox.
    pub fn search_new(
        &mut self,
        after_uid: u32,
        since: Option<time::Date>,
        senders: &[String],
    ) -> Result<Vec<u32>, MailboxError> {
        let mut query = format!("UID {}:*", after_uid.saturating_add(1));
        if let Some(date) = since {
            query.push_str(&format!(" SINCE {}", imap_date(date)));
        }
        if let Some(from) = sender_query(senders) {
            query.push(' ');
            query.push_str(&from);
        }
        let found = self
            .imap
            .uid_search(&query)
            .map_err(protocol("UID SEARCH", self.io_timeout))?;
        // "n:*" always matches the last message, even when its UID is not above n (RFC 3501 §6.4.8).
        Ok(found
            .into_iter()
            .filter(|&uid| uid > after_uid)
            .collect::<BTreeSet<u32>>()
            .into_iter()
            .collect())
    }

    /// RFC822.SIZE of each UID, so oversized mail is skipped before it is downloaded.
    pub fn sizes(&mut self, uids: &[u32]) -> Result<Vec<(u32, u32)>, MailboxError> {
        let mut sizes = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(500) {
            let set = uid_set(chunk);
            let fetches = self
                .imap
                .uid_fetch(&set, "RFC822.SIZE")
                .map_err(protocol("UID FETCH RFC822.SIZE", self.io_timeout))?;
            for fetch in fetches.iter() {
                if let (Some(uid), Some(size)) = (fetch.uid, fetch.size) {
                    sizes.push((uid, size));
                }
            }
        }
        sizes.sort_unstable();
        // A FETCH can answer twice for one message (jstedfast/MailKit#1401).
        sizes.dedup_by_key(|(uid, _)| *uid);
        Ok(sizes)
    }

    /// The raw message, fetched with BODY.PEEK[] so it is not marked \Seen by reading, and
    /// never more than `max_message_size + 1` bytes of it (`<0.N>`), whatever RFC822.SIZE
    /// said: a message that fills the range is longer than allowed and is refused. A server
    /// that sends more than it was asked for is stopped by [`ResponseLimits`].
    pub fn fetch(&mut self, uid: u32) -> Result<Fetched, MailboxError> {
        let range = self
            .max_message_size
            .saturating_add(1)
            .min(u64::from(u32::MAX));
        let fetches = self
            .imap
            .uid_fetch(uid.to_string(), format!("BODY.PEEK[]<0.{range}>"))
            .map_err(protocol(&format!("UID FETCH {uid}"), self.io_timeout))?;
        let body = fetches
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body());
        Ok(match body {
            None => Fetched::Gone,
            Some(body) if body.len() as u64 > self.max_message_size => Fetched::TooLarge,
            Some(body) => Fetched::Message(body.to_vec()),
        })
    }

    /// Whether the folder exists: `LIST "" "name"`, compared exactly (a name with `%` or
    /// `*` also matches others).
    pub fn folder_exists(&mut self, folder: &FolderName) -> Result<bool, MailboxError> {
        let names = self
            .imap
            .list(Some(""), Some(&folder.quoted()))
            .map_err(protocol(&format!("LIST {folder}"), self.io_timeout))?;
        let wanted = folder.as_str();
        let inbox = wanted.eq_ignore_ascii_case("INBOX");
        // imap-proto hands out a quoted name as sent, escapes and all.
        let unescaped = |name: &str| name.replace("\\\"", "\"").replace("\\\\", "\\");
        Ok(names.iter().any(|n| {
            n.name() == wanted
                || unescaped(n.name()) == wanted
                || (inbox && n.name().eq_ignore_ascii_case("INBOX"))
        }))
    }

    pub fn create_folder(&mut self, folder: &FolderName) -> Result<(), MailboxError> {
        // imap quotes the name as `FolderName::quoted` does.
        self.imap
            .create(folder.as_str())
            .map_err(protocol(&format!("CREATE {folder}"), self.io_timeout))?;
        self.known_folders.insert(folder.clone());
        Ok(())
    }

    /// Makes sure the folder exists, creating it if it does not; asks the server once per
    /// session (`forget` asks again, after a `NO [TRYCREATE]`).
    pub fn ensure_folder(
        &mut self,
        folder: &FolderName,
        forget: bool,
    ) -> Result<FolderCheck, MailboxError> {
        if forget {
            self.known_folders.remove(folder);
        }
        if self.known_folders.contains(folder) {
            return Ok(FolderCheck::Exists);
        }
        if self.folder_exists(folder)? {
            self.known_folders.insert(folder.clone());
            return Ok(FolderCheck::Exists);
        }
        self.create_folder(folder).map_err(|error| match error {
            MailboxError::Refused { what, cause } => MailboxError::Refused {
                what: format!("{what} (it does not exist)"),
                cause,
            },
            other => other,
        })?;
        Ok(FolderCheck::Created)
    }

    /// Applies `after_import` to one mail. Nothing is deleted or expunged: MOVE is used
    /// only where the server has it (it removes the original atomically); elsewhere the
    /// mail is copied and keeps the keyword in place.
    pub fn after_import(&mut self, uid: u32, action: &AfterImport) -> Result<(), MailboxError> {
        let set = uid.to_string();
        let timeout = self.io_timeout;
        match action {
            AfterImport::Nothing => Ok(()),
            AfterImport::Flag => self
                .imap
                .uid_store(&set, format!("+FLAGS ({IMPORTED_KEYWORD})"))
                .map(|_| ())
                .map_err(protocol("UID STORE", timeout)),
            AfterImport::Seen => self
                .imap
                .uid_store(&set, "+FLAGS (\\Seen)")
                .map(|_| ())
                .map_err(protocol("UID STORE", timeout)),
            // imap's uid_copy sends the name as given, unquoted: both are written here.
            AfterImport::Move(folder) if self.has_move => {
                let what = format!("UID MOVE {folder}");
                self.imap
                    .run_command_and_check_ok(format!("UID MOVE {set} {}", folder.quoted()))
                    .map_err(|e| missing_folder(e, &what, folder, &self.host, timeout))
            }
            AfterImport::Move(folder) => {
                let what = format!("UID COPY {folder}");
                self.imap
                    .run_command_and_check_ok(format!("UID COPY {set} {}", folder.quoted()))
                    .map_err(|e| missing_folder(e, &what, folder, &self.host, timeout))?;
                self.imap
                    .uid_store(&set, format!("+FLAGS ({IMPORTED_KEYWORD})"))
                    .map(|_| ())
                    .map_err(protocol("UID STORE", timeout))
            }
        }
    }

    /// Waits up to `timeout` for the folder to change: IDLE where the server has it,
    /// otherwise NOOP every `poll_interval`. Returns whether something changed.
    pub fn wait_for_change(
        &mut self,
        timeout: Duration,
        poll_interval: Duration,
    ) -> Result<bool, MailboxError> {
        let io_timeout = self.io_timeout;
        if self.has_idle {
            // keepalive off: the caller re-issues IDLE at least every IDLE_REFRESH.
            let outcome = {
                let mut idle = self.imap.idle();
                idle.timeout(timeout.max(Duration::from_secs(1)))
                    .keepalive(false);
                idle.wait_while(imap::extensions::idle::stop_on_any)
            };
            return match outcome {
                Ok(WaitOutcome::MailboxChanged) => Ok(true),
                Ok(WaitOutcome::TimedOut) => Ok(false),
                Err(e) => Err(protocol("IDLE", io_timeout)(e)),
            };
        }
        let deadline = Instant::now() + timeout;
        let before = self.imap.select_counts();
        while Instant::now() < deadline {
            std::thread::sleep(
                poll_interval.min(deadline.saturating_duration_since(Instant::now())),
            );
            self.imap.noop().map_err(protocol("NOOP", io_timeout))?;
            if self.imap.select_counts() != before {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn logout(mut self) {
        let _ = self.imap.logout();
    }
}

fn folder_status(
    command: &str,
    folder: &FolderName,
    mailbox: &imap::types::Mailbox,
) -> Result<FolderStatus, MailboxError> {
    Ok(FolderStatus {
        uidvalidity: mailbox.uid_validity.ok_or_else(|| MailboxError::Protocol {
            what: format!("{command} {folder}"),
            cause: "the server sent no UIDVALIDITY".into(),
        })?,
        uid_next: mailbox.uid_next,
        exists: mailbox.exists,
    })
}

/// How long one IDLE may last before it is re-issued: well under the 29 minutes of
/// RFC 2177, since servers drop IDLE earlier (imapfilter #104, #153).
pub const IDLE_REFRESH: Duration = Duration::from_secs(20 * 60);

trait SelectCounts {
    fn select_counts(&mut self) -> usize;
}

impl SelectCounts for imap::Session<ImapStream> {
    /// Unsolicited EXISTS/RECENT responses gathered so far: without IDLE, a changed count
    /// after NOOP is the sign of new mail.
    fn select_counts(&mut self) -> usize {
        self.take_all_unsolicited()
            .filter(|r| {
                matches!(
                    r,
                    imap::types::UnsolicitedResponse::Exists(_)
                        | imap::types::UnsolicitedResponse::Recent(_)
                )
            })
            .count()
    }
}

/// The TCP connection, within `connect_timeout`, with `timeout` on every read and write.
fn open_tcp(settings: &MailboxSettings) -> Result<TcpStream, MailboxError> {
    let connect_error = |cause: String| MailboxError::Connect {
        host: settings.host.clone(),
        port: settings.port,
        cause,
    };
    let address = (settings.host.as_str(), settings.port)
        .to_socket_addrs()
        .map_err(|e| connect_error(e.to_string()))?
        .next()
        .ok_or_else(|| connect_error("the name has no address".into()))?;
    let tcp = TcpStream::connect_timeout(&address, settings.connect_timeout)
        .map_err(|e| connect_error(e.to_string()))?;
    tcp.set_read_timeout(Some(settings.io_timeout))
        .and_then(|_| tcp.set_write_timeout(Some(settings.io_timeout)))
        .map_err(|e| connect_error(e.to_string()))?;
    Ok(tcp)
}

fn handshake(
    settings: &MailboxSettings,
    counted: Counted,
) -> Result<native_tls::TlsStream<Counted>, MailboxError> {
    let tls_error = |cause: String| MailboxError::Tls {
        host: settings.host.clone(),
        cause,
    };
    let mut builder = native_tls::TlsConnector::builder();
    builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|e| MailboxError::CaFile {
            path: path.clone(),
            cause: e.to_string(),
        })?;
        let blocks = pem::parse_many(&pem).map_err(|e| MailboxError::CaFile {
            path: path.clone(),
            cause: e.to_string(),
        })?;
        // An empty file would silently leave only the system store: refuse it instead.
        if blocks.is_empty() {
            return Err(MailboxError::CaFile {
                path: path.clone(),
                cause: "it holds no PEM certificate".into(),
            });
        }
        for block in blocks {
            let cert = native_tls::Certificate::from_der(block.contents()).map_err(|e| {
                MailboxError::CaFile {
                    path: path.clone(),
                    cause: e.to_string(),
                }
            })?;
            builder.add_root_certificate(cert);
        }
    }
    if settings.pin_sha256.is_some() {
        // The pin replaces CA validation: exactly that certificate is accepted, checked
        // below before a single IMAP byte is sent.
        builder.danger_accept_invalid_certs(true);
        builder.danger_accept_invalid_hostnames(true);
    }
    let connector = builder.build().map_err(|e| tls_error(e.to_string()))?;
    let name = settings
        .tls_server_name
        .as_deref()
        .unwrap_or(&settings.host);
    let tls = connector.connect(name, counted).map_err(|e| match e {
        native_tls::HandshakeError::Failure(e) => tls_error(e.to_string()),
        native_tls::HandshakeError::WouldBlock(_) => MailboxError::Timeout {
            what: "TLS handshake".into(),
            seconds: settings.io_timeout.as_secs().max(1),
        },
    })?;
    if let Some(expected) = &settings.pin_sha256 {
        let found = tls
            .peer_certificate()
            .map_err(|e| tls_error(e.to_string()))?
            .ok_or_else(|| tls_error("the server sent no certificate".into()))?
            .to_der()
            .map_err(|e| tls_error(e.to_string()))?;
        let found = hex::encode(Sha256::digest(&found));
        let expected_normal = expected.replace(':', "").to_ascii_lowercase();
        if found != expected_normal {
            return Err(MailboxError::PinMismatch {
                host: settings.host.clone(),
                found,
                expected: expected.clone(),
            });
        }
    }
    Ok(tls)
}

/// The plain-text part of STARTTLS (RFC 3501 §6.2.1), spoken by hand: the imap crate keeps
/// its command runner private on a not-yet-logged-in client. Lines are read a byte at a
/// time so no byte of the TLS handshake that follows is consumed here.
fn starttls(mut plain: Counted, host: &str, timeout: Duration) -> Result<Counted, MailboxError> {
    use std::io::{Read, Write};
    let io = |what: &str, e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => MailboxError::Timeout {
            what: what.to_string(),
            seconds: timeout.as_secs().max(1),
        },
        _ => MailboxError::Protocol {
            what: what.to_string(),
            cause: e.to_string(),
        },
    };
    let read_line = |plain: &mut Counted, what: &str| -> Result<String, MailboxError> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 8192 {
            match plain.read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => line.push(byte[0]),
                Err(e) => return Err(io(what, e)),
            }
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    };
    let greeting = read_line(&mut plain, "greeting")?;
    if !greeting.starts_with("* OK") {
        return Err(MailboxError::Protocol {
            what: "greeting".into(),
            cause: greeting,
        });
    }
    let command =
        |plain: &mut Counted, tag: &str, text: &str| -> Result<Vec<String>, MailboxError> {
            plain
                .write_all(format!("{tag} {text}\r\n").as_bytes())
                .map_err(|e| io(text, e))?;
            let mut lines = Vec::new();
            for _ in 0..32 {
                let line = read_line(plain, text)?;
                if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                    if status.starts_with("OK") {
                        return Ok(lines);
                    }
                    return Err(MailboxError::Protocol {
                        what: text.to_string(),
                        cause: status.to_string(),
                    });
                }
                if line.is_empty() && lines.last().is_some_and(String::is_empty) {
                    break;
                }
                lines.push(line);
            }
            Err(MailboxError::Protocol {
                what: text.to_string(),
                cause: "no tagged answer".into(),
            })
        };
    let capabilities = command(&mut plain, "f1", "CAPABILITY")?;
    if !capabilities.iter().any(|l| {
        l.to_ascii_uppercase()
            .split_whitespace()
            .any(|w| w == "STARTTLS")
    }) {
        return Err(MailboxError::NoStartTls {
            host: host.to_string(),
        });
    }
    command(&mut plain, "f2", "STARTTLS")?;
    Ok(plain)
}

/// `NO [TRYCREATE]` as [`MailboxError::MissingFolder`], any other error as [`protocol`].
fn missing_folder(
    error: imap::Error,
    what: &str,
    folder: &FolderName,
    host: &str,
    io_timeout: Duration,
) -> MailboxError {
    match &error {
        imap::Error::No(no) if no.code == Some(imap_proto::ResponseCode::TryCreate) => {
            MailboxError::MissingFolder {
                what: what.to_string(),
                folder: folder.clone(),
                host: host.to_string(),
                server_says: printable(no.information.as_bytes()),
            }
        }
        _ => protocol(what, io_timeout)(error),
    }
}

/// The server's own words from a refusal ("NO [AUTHENTICATIONFAILED] Authentication failed.").
fn server_text(error: &imap::Error) -> String {
    match error {
        imap::Error::No(no) => no.information.clone(),
        imap::Error::Bad(bad) => bad.information.clone(),
        imap::Error::Bye(bye) => bye.information.clone(),
        other => other.to_string(),
    }
}

/// IMAP date (RFC 3501 `date`): 1-Feb-2026.
fn imap_date(date: time::Date) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}-{}-{}",
        date.day(),
        MONTHS[usize::from(u8::from(date.month())) - 1],
        date.year()
    )
}

/// `FROM a`, or `OR FROM a FROM b`, … as a search key. Addresses were checked by the config
/// to hold no quote, backslash or line break.
fn sender_query(senders: &[String]) -> Option<String> {
    let mut keys = senders.iter().map(|s| format!("FROM \"{s}\""));
    let first = keys.next()?;
    Some(keys.fold(first, |acc, key| format!("OR {acc} {key}")))
}

/// "1:3,7,9:10" from sorted UIDs.
fn uid_set(uids: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_sends_the_token_once_and_answers_the_error_challenge_empty() {
        let token = Secret::new("ya29.token");
        let xoauth2 = XOAuth2::new("someone@example.com", &token);
        assert_eq!(
            imap::Authenticator::process(&xoauth2, b""),
            "user=someone@example.com\x01auth=Bearer ya29.token\x01\x01"
        );
        let error = br#"{"status":"401","schemes":"bearer","scope":"mail"}"#;
        assert_eq!(imap::Authenticator::process(&xoauth2, error), "");
        assert_eq!(
            xoauth2.error.take().as_deref(),
            Some(r#"{"status":"401","schemes":"bearer","scope":"mail"}"#)
        );
        assert_eq!(printable(b"a\r\nb\x1b[2J"), "a??b?[2J");
    }

    #[test]
    fn folder_names_are_checked_and_quoted() {
        assert_eq!(FolderName::new("INBOX").unwrap().quoted(), "\"INBOX\"");
        assert_eq!(
            FolderName::new("Certs \"2026\" \\ done").unwrap().quoted(),
            "\"Certs \\\"2026\\\" \\\\ done\""
        );
        for bad in ["", "A\r\nB", "A\nB", "A\rB", "A\0B"] {
            assert!(FolderName::new(bad).is_err(), "{bad:?}");
        }
        let error = FolderName::new("x\r\nA1 DELETE INBOX").unwrap_err();
        assert!(error.contains("x\\r\\nA1 DELETE INBOX"), "{error}");
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn search_keys() {
        assert_eq!(imap_date(time::macros::date!(2026 - 02 - 01)), "1-Feb-2026");
        assert_eq!(sender_query(&[]), None);
        assert_eq!(
            sender_query(&["a@x".into()]).as_deref(),
            Some("FROM \"a@x\"")
        );
        assert_eq!(
            sender_query(&["a@x".into(), "b@y".into(), "c@z".into()]).as_deref(),
            Some("OR OR FROM \"a@x\" FROM \"b@y\" FROM \"c@z\"")
        );
    }
}
