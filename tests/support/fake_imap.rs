//! A scripted IMAP server over TLS on loopback, for what a real Dovecot will not do: claim
//! one RFC822.SIZE and send another, send a line that never ends, offer no MOVE, answer a
//! COPY into a missing folder with `NO [TRYCREATE]` as Cyrus does. It speaks just enough
//! IMAP4rev1 for `fulfill poll` (CAPABILITY, LOGIN, SELECT, UID SEARCH, UID FETCH, UID
//! STORE, UID COPY/MOVE, LIST, CREATE, NOOP, LOGOUT) and records every command line it
//! gets, so a test can say what the client sent.
//!
//! Its certificate is a [`make_cert`] `localhost` one (SANs 127.0.0.1 and 127.0.0.2): a
//! client trusts it through [`FakeImap::cert_pem_path`] as a `ca_file`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::dovecot::{ServerCert, make_cert};

/// What the server holds and how it misbehaves.
#[derive(Debug, Clone)]
pub struct Script {
    /// The CAPABILITY list; without `MOVE` the client copies and flags instead.
    pub capabilities: String,
    pub uidvalidity: u32,
    pub messages: Vec<FakeMessage>,
    /// Folders that exist besides INBOX; CREATE adds to them.
    pub folders: Vec<String>,
    /// CREATE answers `NO [NOPERM]`, as on a server where the user may not make folders.
    pub refuse_create: bool,
    /// What `UID FETCH ... BODYSTRUCTURE` answers for every message: `None` refuses the
    /// command (`NO`), as a server that cannot describe its mail; `Some(text)` sends
    /// `BODYSTRUCTURE text`, which may be anything, parseable or not.
    pub bodystructure: Option<String>,
    /// A BODYSTRUCTURE of its own for these UIDs, over `bodystructure`.
    pub structures: Vec<(u32, String)>,
    /// Every section asked for by name (`BODY.PEEK[1.MIME]`, not `BODY.PEEK[]`) is
    /// answered with this many bytes (`x`), whatever the structure said.
    pub section_filler: Option<u64>,
    /// A `UID FETCH` of sections by name is answered `NO`.
    pub refuse_sections: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            capabilities: "IMAP4rev1 UIDPLUS MOVE".into(),
            uidvalidity: 7,
            messages: Vec::new(),
            folders: Vec::new(),
            refuse_create: false,
            bodystructure: None,
            structures: Vec::new(),
            section_filler: None,
            refuse_sections: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FakeMessage {
    pub uid: u32,
    /// The RFC822.SIZE the server claims, or none (the server leaves the UID out).
    pub claimed_size: Option<u32>,
    pub body: Body,
}

#[derive(Debug, Clone)]
pub enum Body {
    /// The message, sent as a literal and cut to the range asked for, as a server should.
    Honest(Vec<u8>),
    /// A literal of this many bytes (`x`), whatever range was asked for.
    Literal(u64),
    /// A FETCH response line of this many bytes that never ends.
    EndlessLine(u64),
}

pub struct FakeImap {
    port: u16,
    cert_path: PathBuf,
    commands: Arc<Mutex<Vec<String>>>,
    state: Arc<Mutex<Script>>,
    _dir: tempfile::TempDir,
}

impl FakeImap {
    /// Starts the server on a fresh port of 127.0.0.1; it answers every connection with
    /// `script` (CREATE changes the folders for later connections too).
    pub fn start(script: Script) -> FakeImap {
        let cert = make_cert(&ServerCert::Localhost);
        let dir = tempfile::tempdir().expect("temp dir");
        let cert_path = dir.path().join("fake-imap.pem");
        std::fs::write(&cert_path, &cert.cert_pem).expect("write the certificate");
        let identity =
            native_tls::Identity::from_pkcs8(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
                .expect("a TLS identity from the test certificate");
        let acceptor = Arc::new(native_tls::TlsAcceptor::new(identity).expect("TLS acceptor"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(Mutex::new(script));
        {
            let commands = commands.clone();
            let state = state.clone();
            thread::spawn(move || {
                for tcp in listener.incoming() {
                    let Ok(tcp) = tcp else { continue };
                    let (acceptor, commands, state) =
                        (acceptor.clone(), commands.clone(), state.clone());
                    thread::spawn(move || {
                        let _ = serve(tcp, &acceptor, &commands, &state);
                    });
                }
            });
        }
        FakeImap {
            port,
            cert_path,
            commands,
            state,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server certificate (PEM), to trust as a `ca_file`.
    pub fn cert_pem_path(&self) -> &Path {
        &self.cert_path
    }

    /// Every command line received so far, without its tag, in order.
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }

    /// Forgets the commands received so far.
    pub fn clear_commands(&self) {
        self.commands.lock().unwrap().clear();
    }

    /// The folders that exist now, besides INBOX.
    pub fn folders(&self) -> Vec<String> {
        self.state.lock().unwrap().folders.clone()
    }

    /// Changes what CREATE answers from now on.
    pub fn set_refuse_create(&self, refuse: bool) {
        self.state.lock().unwrap().refuse_create = refuse;
    }

    /// Changes the UIDVALIDITY, as a server migration does.
    pub fn set_uidvalidity(&self, uidvalidity: u32) {
        self.state.lock().unwrap().uidvalidity = uidvalidity;
    }

    /// Replaces the messages the server holds.
    pub fn set_messages(&self, messages: Vec<FakeMessage>) {
        self.state.lock().unwrap().messages = messages;
    }
}

fn serve(
    tcp: TcpStream,
    acceptor: &native_tls::TlsAcceptor,
    commands: &Mutex<Vec<String>>,
    state: &Mutex<Script>,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(30)))?;
    let tls = acceptor
        .accept(tcp)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut conn = BufReader::new(tls);
    let capabilities = state.lock().unwrap().capabilities.clone();
    write!(
        conn.get_mut(),
        "* OK [CAPABILITY {capabilities}] fake IMAP ready\r\n"
    )?;
    loop {
        let mut line = Vec::new();
        if conn.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        let (tag, command) = line.split_once(' ').unwrap_or((&line, ""));
        commands.lock().unwrap().push(command.to_string());
        let upper = command.to_ascii_uppercase();
        let out = conn.get_mut();
        let script = state.lock().unwrap().clone();
        if upper == "CAPABILITY" {
            write!(
                out,
                "* CAPABILITY {}\r\n{tag} OK done\r\n",
                script.capabilities
            )?;
        } else if upper.starts_with("LOGIN ") || upper.starts_with("AUTHENTICATE ") {
            write!(out, "{tag} OK Logged in\r\n")?;
        } else if upper.starts_with("SELECT ") || upper.starts_with("EXAMINE ") {
            let next = script.messages.iter().map(|m| m.uid).max().unwrap_or(0) + 1;
            write!(
                out,
                "* FLAGS (\\Seen \\Flagged)\r\n* {} EXISTS\r\n* 0 RECENT\r\n\
                 * OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {next}] Predicted next UID\r\n\
                 {tag} OK [READ-WRITE] Select completed.\r\n",
                script.messages.len(),
                script.uidvalidity
            )?;
        } else if upper.starts_with("UID SEARCH ") {
            // "UID n:*" first, as fulfill asks; n:* always holds the last message.
            let from: u32 = upper
                .split_whitespace()
                .nth(3)
                .and_then(|range| range.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let mut uids: Vec<u32> = script.messages.iter().map(|m| m.uid).collect();
            uids.sort_unstable();
            let mut found: Vec<u32> = uids.iter().copied().filter(|&u| u >= from).collect();
            if found.is_empty() {
                found.extend(uids.last());
            }
            let found: Vec<String> = found.iter().map(u32::to_string).collect();
            write!(
                out,
                "* SEARCH {}\r\n{tag} OK Search completed.\r\n",
                found.join(" ")
            )?;
        } else if upper.starts_with("UID FETCH ") && upper.contains("BODYSTRUCTURE") {
            let set = upper.split_whitespace().nth(2).unwrap_or("").to_string();
            let structure_of = |uid: u32| {
                (script.structures.iter())
                    .find(|(u, _)| *u == uid)
                    .map(|(_, structure)| structure)
                    .or(script.bodystructure.as_ref())
            };
            match script.bodystructure.is_some() || !script.structures.is_empty() {
                false => write!(out, "{tag} NO BODYSTRUCTURE is not scripted.\r\n")?,
                true => {
                    for (seq, message) in script.messages.iter().enumerate() {
                        if let Some(structure) =
                            structure_of(message.uid).filter(|_| in_set(&set, message.uid))
                        {
                            let (seq, uid) = (seq + 1, message.uid);
                            let size = (message.claimed_size)
                                .filter(|_| upper.contains("RFC822.SIZE"))
                                .map_or(String::new(), |size| format!("RFC822.SIZE {size} "));
                            write!(
                                out,
                                "* {seq} FETCH (UID {uid} {size}BODYSTRUCTURE {structure})\r\n"
                            )?;
                        }
                    }
                    write!(out, "{tag} OK Fetch completed.\r\n")?;
                }
            }
        } else if script.refuse_sections
            && upper.starts_with("UID FETCH ")
            && upper.contains("BODY.PEEK[H")
        {
            write!(out, "{tag} NO Sections are not scripted.\r\n")?;
        } else if let Some(filler) = (script.section_filler)
            .filter(|_| upper.starts_with("UID FETCH ") && upper.contains("BODY.PEEK[H"))
        {
            let set = upper.split_whitespace().nth(2).unwrap_or("").to_string();
            let sections: Vec<&str> = (upper.split("BODY.PEEK[").skip(1))
                .filter_map(|rest| rest.split(']').next())
                .collect();
            for (seq, message) in script.messages.iter().enumerate() {
                if in_set(&set, message.uid) {
                    write!(out, "* {} FETCH (UID {}", seq + 1, message.uid)?;
                    for section in &sections {
                        write!(out, " BODY[{section}] {{{filler}}}\r\n")?;
                        send_filler(out, filler, b'x')?;
                    }
                    out.write_all(b")\r\n")?;
                }
            }
            write!(out, "{tag} OK Fetch completed.\r\n")?;
        } else if upper.starts_with("UID FETCH ") {
            let set = upper.split_whitespace().nth(2).unwrap_or("").to_string();
            for (seq, message) in script.messages.iter().enumerate() {
                if !in_set(&set, message.uid) {
                    continue;
                }
                let seq = seq + 1;
                let uid = message.uid;
                if upper.contains("RFC822.SIZE") {
                    if let Some(size) = message.claimed_size {
                        write!(out, "* {seq} FETCH (UID {uid} RFC822.SIZE {size})\r\n")?;
                    }
                    continue;
                }
                match &message.body {
                    Body::Honest(bytes) => {
                        let (section, bytes) = match partial(&upper) {
                            Some(n) => ("BODY[]<0>", &bytes[..bytes.len().min(n)]),
                            None => ("BODY[]", &bytes[..]),
                        };
                        write!(
                            out,
                            "* {seq} FETCH (UID {uid} {section} {{{}}}\r\n",
                            bytes.len()
                        )?;
                        out.write_all(bytes)?;
                        out.write_all(b")\r\n")?;
                    }
                    Body::Literal(size) => {
                        write!(out, "* {seq} FETCH (UID {uid} BODY[]<0> {{{size}}}\r\n")?;
                        send_filler(out, *size, b'x')?;
                        out.write_all(b")\r\n")?;
                    }
                    Body::EndlessLine(size) => {
                        write!(out, "* {seq} FETCH (UID {uid} FLAGS (")?;
                        send_filler(out, *size, b'a')?;
                        out.flush()?;
                        // Never ends the line; the client must give up on its own.
                        thread::sleep(Duration::from_secs(60));
                        return Ok(());
                    }
                }
            }
            write!(out, "{tag} OK Fetch completed.\r\n")?;
        } else if upper.starts_with("UID STORE ") {
            write!(out, "{tag} OK Store completed.\r\n")?;
        } else if upper.starts_with("UID COPY ") || upper.starts_with("UID MOVE ") {
            let target = quoted_argument(command);
            match target {
                Some(name) if name == "INBOX" || script.folders.contains(&name) => {
                    if upper.starts_with("UID MOVE ") {
                        let set = upper.split_whitespace().nth(2).unwrap_or("").to_string();
                        state
                            .lock()
                            .unwrap()
                            .messages
                            .retain(|m| !in_set(&set, m.uid));
                    }
                    write!(out, "{tag} OK Done.\r\n")?;
                }
                Some(_) => write!(out, "{tag} NO [TRYCREATE] Mailbox does not exist\r\n")?,
                None => write!(out, "{tag} BAD Expected a quoted mailbox name\r\n")?,
            }
        } else if upper.starts_with("CREATE ") {
            match quoted_argument(command) {
                Some(_) if script.refuse_create => {
                    write!(out, "{tag} NO [NOPERM] Permission denied\r\n")?
                }
                Some(name) => {
                    let mut state = state.lock().unwrap();
                    if !state.folders.contains(&name) {
                        state.folders.push(name);
                    }
                    write!(out, "{tag} OK Create completed.\r\n")?;
                }
                None => write!(out, "{tag} BAD Expected a quoted mailbox name\r\n")?,
            }
        } else if upper.starts_with("LIST ") {
            // LIST "" "name": the name itself, if it exists (no wildcards here).
            if let Some(name) =
                quoted_argument(command).filter(|n| n == "INBOX" || script.folders.contains(n))
            {
                let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
                write!(out, "* LIST (\\HasNoChildren) \"/\" \"{quoted}\"\r\n")?;
            }
            write!(out, "{tag} OK List completed.\r\n")?;
        } else if upper == "NOOP" {
            write!(out, "{tag} OK NOOP completed.\r\n")?;
        } else if upper == "LOGOUT" {
            write!(out, "* BYE Logging out\r\n{tag} OK Logout completed.\r\n")?;
            return Ok(());
        } else {
            write!(out, "{tag} BAD Unknown command\r\n")?;
        }
        out.flush()?;
    }
}

/// N of `BODY.PEEK[]<0.N>`, if a range was asked for.
fn partial(upper: &str) -> Option<usize> {
    let start = upper.find("BODY.PEEK[]<0.")? + "BODY.PEEK[]<0.".len();
    let end = upper[start..].find('>')? + start;
    upper[start..end].parse().ok()
}

/// Whether `uid` is in a UID set such as `1:3,7,9:*`.
fn in_set(set: &str, uid: u32) -> bool {
    set.split(',').any(|part| match part.split_once(':') {
        Some((a, b)) => {
            let a: u32 = a.parse().unwrap_or(u32::MAX);
            let b: u32 = if b == "*" {
                u32::MAX
            } else {
                b.parse().unwrap_or(0)
            };
            (a.min(b)..=a.max(b)).contains(&uid)
        }
        None => part.parse() == Ok(uid),
    })
}

/// The last argument of a command when it is a quoted string, unescaped; `None` when it
/// is sent bare (an atom), which this server refuses, as a strict server may.
fn quoted_argument(command: &str) -> Option<String> {
    if !command.trim_end().ends_with('"') {
        return None;
    }
    let mut strings = Vec::new();
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut string = String::new();
        loop {
            match chars.next()? {
                '\\' => string.push(chars.next()?),
                '"' => break,
                c => string.push(c),
            }
        }
        strings.push(string);
    }
    strings.pop()
}

/// Sends `size` bytes of `byte`, in chunks; stops quietly when the client hangs up.
fn send_filler(out: &mut impl Write, size: u64, byte: u8) -> std::io::Result<()> {
    let chunk = vec![byte; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(())
}
