//! `fulfill poll` against a scripted IMAP server (tests/support/fake_imap.rs) that does
//! what Dovecot will not: claims one size and sends another, sends a line that never ends,
//! offers no MOVE, answers like Cyrus. The run must refuse what is too large by the name of
//! the limit, with its memory bounded (the child's peak RSS, from `wait4`), quote folder
//! names in every command, and send no more than SELECT and UID SEARCH when nothing is new.

mod support;

use fulfill_test_pki as pki;

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;

use support::fake_imap::{Body, FakeImap, FakeMessage, Script};
use support::{Home, open_db};

const MIB: u64 = 1024 * 1024;

/// A scripted server, a private home, a test CA and a keys folder.
struct Fake {
    server: FakeImap,
    home: Home,
    issuing: pki::Ca,
    keys: PathBuf,
    config: PathBuf,
    serial: u32,
}

/// What a run printed, how it ended and its peak memory.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The child's peak resident set, in bytes.
    max_rss: u64,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}, peak RSS {} KiB\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.max_rss / 1024,
            self.stdout,
            self.stderr
        )
    }
}

impl Fake {
    fn start(script: Script) -> Fake {
        let home = Home::new();
        let root = pki::root("Fake IMAP Test Root");
        let issuing = pki::intermediate("Fake IMAP Test Issuing CA", &root);
        let keys = home.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::write(home.path().join("root.pem"), &root.pem).unwrap();
        let fake = Fake {
            server: FakeImap::start(script),
            config: home.path().join("config.toml"),
            home,
            issuing,
            keys,
            serial: 0,
        };
        fake.configure("");
        fake
    }

    /// Writes the config, with `extra` lines in [mailbox].
    fn configure(&self, extra: &str) {
        std::fs::write(
            &self.config,
            format!(
                "[mailbox]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\nca_file = \"{}\"\n\
                 username = \"certs@example.com\"\ntimeout = \"5s\"\nrun_timeout = \"2m\"\n{extra}\
                 [keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n",
                self.server.port(),
                self.server.cert_pem_path().display(),
                self.keys.display(),
                self.home.path().join("root.pem").display()
            ),
        )
        .unwrap();
    }

    /// A CA's fulfillment mail for a new certificate of `name`, whose key and CSR are in
    /// the keys folder.
    fn fulfillment_mail(&mut self, name: &str) -> Vec<u8> {
        self.serial += 1;
        let spec = pki::LeafSpec::new(&[name]).valid(pki::ymd(2025, 1, 1), pki::ymd(2034, 1, 1));
        let leaf = pki::leaf(&spec, &self.issuing);
        std::fs::write(
            self.keys.join(format!("{name}-{}.key", self.serial)),
            leaf.key_pem(),
        )
        .unwrap();
        std::fs::write(
            self.keys.join(format!("{name}-{}.csr", self.serial)),
            pki::csr_pem(&leaf.key, Some(name), &[name]),
        )
        .unwrap();
        format!(
            "From: \"Test CA Orders\" <orders@ca.example>\r\nTo: certs@example.com\r\n\
             Subject: Your certificate for {name}\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n\
             Message-ID: <{}.{name}@ca.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n\
             Your certificate for {name} is below.\r\n\r\n{}{}\r\nThe Test CA team\r\n",
            self.serial,
            leaf.pem.replace('\n', "\r\n"),
            self.issuing.pem.replace('\n', "\r\n"),
        )
        .into_bytes()
    }

    /// `fulfill --json poll`, waited for with `wait4` so its peak RSS is its own.
    // The child is reaped by wait4, which std's Child does not know of.
    #[allow(clippy::zombie_processes)]
    fn poll(&self) -> Run {
        let mut command = self.home.fulfill_process();
        command
            .env("FULFILL_IMAP_PASSWORD", "fake-password")
            .arg("--config")
            .arg(&self.config)
            .args(["--json", "poll"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start fulfill");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = pipe.read_to_end(&mut text);
                String::from_utf8_lossy(&text).into_owned()
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let pid = child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own child, not yet waited for; the pointers are to locals.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
        let run = Run {
            code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
            // Linux counts ru_maxrss in KiB.
            max_rss: usage.ru_maxrss as u64 * 1024,
        };
        eprintln!(
            "poll: exit {:?}, peak RSS {} KiB; stderr: {}",
            run.code,
            run.max_rss / 1024,
            run.stderr.trim()
        );
        run
    }
}

impl Fake {
    /// `(kind, detail)` of every event.
    fn events(&self) -> Vec<(String, String)> {
        let db = open_db(&self.home.default_db());
        let mut stmt = db
            .prepare("SELECT kind, detail FROM events ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The commands of the last runs that read or change the mailbox (not LOGIN,
    /// CAPABILITY or LOGOUT), with the SEARCH and FETCH arguments cut to their verb.
    fn mailbox_commands(&self) -> Vec<String> {
        (self.server.commands().into_iter())
            .filter(|c| {
                !["LOGIN ", "CAPABILITY", "LOGOUT"]
                    .iter()
                    .any(|p| c.starts_with(p))
            })
            .map(
                |c| match c.split_whitespace().take(2).collect::<Vec<_>>()[..] {
                    ["UID", verb] => format!("UID {verb}"),
                    _ => c,
                },
            )
            .collect()
    }
}

fn message(uid: u32, claimed_size: Option<u32>, body: Body) -> FakeMessage {
    FakeMessage {
        uid,
        claimed_size,
        body,
    }
}

fn honest(uid: u32, bytes: Vec<u8>) -> FakeMessage {
    message(uid, Some(bytes.len() as u32), Body::Honest(bytes))
}

fn imported(report: &serde_json::Value) -> Vec<String> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "imported")
        .map(|r| r["common_name"].as_str().unwrap().to_string())
        .collect()
}

/// A server without MOVE: the mail is copied and flagged, and the folder name goes out as
/// a quoted string (a bare `Imported Certs` would be two arguments, and a name from the
/// config must never be able to end the command line).
#[test]
fn without_move_the_copy_quotes_the_folder_name() {
    let mut f = Fake::start(Script {
        capabilities: "IMAP4rev1 UIDPLUS".into(),
        folders: vec!["Imported \"Certs\"".into()],
        ..Script::default()
    });
    let mail = f.fulfillment_mail("www.copy.example.com");
    f.server.set_messages(vec![honest(1, mail)]);
    f.configure("after_import = 'move:Imported \"Certs\"'\n");
    let run = f.poll();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(imported(&run.json()), vec!["www.copy.example.com"]);
    let commands = f.server.commands();
    assert!(
        commands.contains(&r#"UID COPY 1 "Imported \"Certs\"""#.to_string()),
        "{commands:#?}"
    );
    assert!(
        commands.contains(&"UID STORE 1 +FLAGS ($FulfillImported)".to_string()),
        "{commands:#?}"
    );
    // LIST found the folder by its exact (unescaped) name: nothing was created.
    assert!(
        !commands.iter().any(|c| c.starts_with("CREATE")),
        "{commands:#?}"
    );
}

/// A server that says RFC822.SIZE 1 KB, then sends a 100 MB message whatever range was asked
/// for: refused as soon as it is announced, by the name of the limit, and the run's memory
/// stays far below what it announced. The mail is recorded as too large and the next run
/// goes on after it.
#[test]
fn a_server_that_sends_more_than_it_said_is_refused_by_max_message_size() {
    let f = Fake::start(Script {
        messages: vec![message(1, Some(1024), Body::Literal(100 * MIB))],
        ..Script::default()
    });
    let run = f.poll();
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("max_message_size"), "{run}");
    assert!(run.stderr.contains("104857600 bytes"), "{run}");
    assert!(run.max_rss < 100 * MIB, "{run}");
    // It asked for no more than max_message_size + 1 bytes (25 MiB by default).
    assert!(
        (f.server.commands().iter()).any(|c| c == "UID FETCH 1 BODY.PEEK[]<0.26214401>"),
        "{:#?}",
        f.server.commands()
    );
    let events = f.events();
    assert!(
        events.iter().any(|(kind, detail)| kind == "mail_too_large"
            && detail.contains(";UID=1:")
            && detail.contains("max_message_size")),
        "{events:#?}"
    );

    f.server.clear_commands();
    let run = f.poll();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(run.json()["new_messages"], 0, "{run}");
    assert_eq!(f.mailbox_commands(), ["SELECT \"INBOX\"", "UID SEARCH"]);
}

/// A response line that never ends: given up after the line limit, memory bounded.
#[test]
fn a_line_that_never_ends_is_refused() {
    let f = Fake::start(Script {
        messages: vec![message(1, Some(1024), Body::EndlessLine(100 * MIB))],
        ..Script::default()
    });
    let run = f.poll();
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr.contains("a line longer than 4194304 bytes"),
        "{run}"
    );
    assert!(run.max_rss < 100 * MIB, "{run}");
}

/// A mail longer than max_message_size whose server said it was small: only
/// max_message_size + 1 bytes of it are read, it is refused by name, and the run goes on
/// to the next mail.
#[test]
fn a_mail_over_max_message_size_is_read_no_further_than_the_limit() {
    let mut f = Fake::start(Script::default());
    let mut big = f.fulfillment_mail("www.big.example.com");
    big.extend_from_slice(format!("{}\r\n", "x".repeat(70)).repeat(300).as_bytes());
    let small = f.fulfillment_mail("www.small.example.com");
    f.server.set_messages(vec![
        message(1, Some(1000), Body::Honest(big)),
        honest(2, small),
    ]);
    f.configure("max_message_size = \"8KiB\"\n");
    let run = f.poll();
    assert_eq!(run.code, Some(0), "{run}");
    let report = run.json();
    assert_eq!(report["too_large"], 1, "{run}");
    assert_eq!(imported(&report), vec!["www.small.example.com"]);
    assert!(
        report["bytes_read"].as_u64().unwrap() < 8192 + 8000,
        "no more than the limit of the big mail was read: {run}"
    );
    assert!(
        (f.server.commands().iter()).any(|c| c == "UID FETCH 1 BODY.PEEK[]<0.8193>"),
        "{:#?}",
        f.server.commands()
    );
    let events = f.events();
    assert!(
        events.iter().any(|(kind, detail)| kind == "mail_too_large"
            && detail.contains(";UID=1:")
            && detail.contains("longer than max_message_size (8192 bytes)")),
        "{events:#?}"
    );
}

/// The cron case: with nothing new and no mark pending, a run is one SELECT and one UID
/// SEARCH, whatever the mailbox holds. A pending mark adds its own commands, once.
#[test]
fn a_run_with_nothing_new_and_nothing_pending_is_one_select_and_one_search() {
    let mut f = Fake::start(Script::default());
    let mail = f.fulfillment_mail("www.quiet.example.com");
    f.server.set_messages(vec![honest(1, mail)]);
    f.configure("after_import = \"move:Imported\"\n");
    let run = f.poll();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(imported(&run.json()), vec!["www.quiet.example.com"]);
    // The folder was missing: looked for, created, then the mail moved.
    assert_eq!(
        f.mailbox_commands(),
        [
            "SELECT \"INBOX\"",
            "UID SEARCH",
            "UID FETCH",
            "UID FETCH",
            "UID FETCH",
            "LIST \"\" \"Imported\"",
            "CREATE \"Imported\"",
            "UID MOVE"
        ]
    );
    assert_eq!(f.server.folders(), ["Imported"]);

    f.server.clear_commands();
    let run = f.poll();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(f.mailbox_commands(), ["SELECT \"INBOX\"", "UID SEARCH"]);
}

/// A UID the server gives no RFC822.SIZE for: recorded in `events` with its UID, and still
/// read (no further than max_message_size), so a certificate in it is not lost.
#[test]
fn a_mail_without_a_size_is_recorded_and_still_read() {
    let mut f = Fake::start(Script::default());
    let mail = f.fulfillment_mail("www.unsized.example.com");
    f.server
        .set_messages(vec![message(3, None, Body::Honest(mail))]);
    let run = f.poll();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(imported(&run.json()), vec!["www.unsized.example.com"]);
    let events = f.events();
    assert!(
        events
            .iter()
            .any(|(kind, detail)| kind == "mail_without_size"
                && detail.contains(";UID=3:")
                && detail.contains("no RFC822.SIZE")),
        "{events:#?}"
    );
}

/// A server that refuses CREATE (as Cyrus may): the mark stays pending. Its UIDs mean
/// nothing after a UIDVALIDITY change, so the pending mark is dropped (with an event) and
/// the rescan, finding the certificate already recorded, marks the mail again, under its
/// new UID.
#[test]
fn a_pending_mark_of_an_old_uidvalidity_gives_way_to_the_rescan() {
    let mut f = Fake::start(Script {
        refuse_create: true,
        ..Script::default()
    });
    let mail = f.fulfillment_mail("www.moved.example.com");
    f.server.set_messages(vec![honest(1, mail.clone())]);
    f.configure("after_import = \"move:Imported\"\n");
    let run = f.poll();
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("Permission denied"), "{run}");
    assert_eq!(imported(&run.json()), vec!["www.moved.example.com"]);

    f.server.set_uidvalidity(8);
    f.server.set_messages(vec![honest(1, mail)]);
    f.server.set_refuse_create(false);
    let run = f.poll();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(run.json()["results"][0]["outcome"], "already_imported");
    assert_eq!(f.server.folders(), ["Imported"]);
    let events = f.events();
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "certificate_recorded",
            "mark_failed",
            "mark_dropped",
            "certificate_already_recorded",
            "mailbox_folder_created"
        ],
        "{events:#?}"
    );
    assert!(
        events[2]
            .1
            .contains("UIDVALIDITY=7;UID=1: after_import move:Imported not applied")
    );
}

/// A BODYSTRUCTURE answer imap-proto cannot parse: the session is opened again (imap left
/// the rest of the answer on the old connection), the mails of that command are fetched
/// whole as before structures were read, and the certificate is imported. A server that
/// refuses BODYSTRUCTURE (`NO`, the fake's default) is read whole on the same connection.
#[test]
fn a_structure_the_parser_refuses_is_read_whole_on_a_new_connection() {
    let mut f = Fake::start(Script {
        bodystructure: Some("(\"text\" \"plain\" garbage".into()),
        ..Script::default()
    });
    let first = f.fulfillment_mail("www.unparsed.example.com");
    let second = f.fulfillment_mail("www.unparsed2.example.com");
    f.server
        .set_messages(vec![honest(1, first), honest(2, second)]);
    let run = f.poll();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(
        imported(&run.json()),
        vec!["www.unparsed.example.com", "www.unparsed2.example.com"]
    );
    let commands = f.server.commands();
    let logins = commands.iter().filter(|c| c.starts_with("LOGIN")).count();
    assert_eq!(
        logins, 2,
        "logged in again after the unparsed answer: {commands:#?}"
    );
    let whole = |uid: u32| format!("UID FETCH {uid} BODY.PEEK[]<0.26214401>");
    assert!(
        commands.contains(&whole(1)) && commands.contains(&whole(2)),
        "{commands:#?}"
    );
}

/// A server whose BODYSTRUCTUREs claim parts of a few bytes and whose sections are
/// 400 KB each, with every mail of a different shape (so one command each, each within
/// what one command may answer): once the batch's answers pass max_message_size, no more
/// parts are asked for, and the rest of the batch is read whole, mail by mail, within the
/// limit; the batch never holds every shape's answer at once.
#[test]
fn sections_larger_than_the_structure_said_stop_the_batched_fetch() {
    let text = "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL)";
    let structures = (1..=8u32)
        .map(|k| {
            let parts = text.repeat(k as usize);
            (
                k,
                format!("({parts} \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)"),
            )
        })
        .collect();
    let mut f = Fake::start(Script {
        structures,
        section_filler: Some(400_000),
        ..Script::default()
    });
    f.configure("max_message_size = \"1MiB\"\n");
    let mails: Vec<FakeMessage> = (1..=8u32)
        .map(|uid| {
            let mail = f.fulfillment_mail(&format!("www.shape{uid}.example.com"));
            honest(uid, mail)
        })
        .collect();
    f.server.set_messages(mails);
    let run = f.poll();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(imported(&run.json()).len(), 8, "{run}");
    assert!(
        run.stderr
            .contains("more of the parts of this batch than the sizes it gave"),
        "{run}"
    );
    let commands = f.server.commands();
    let batched = commands
        .iter()
        .filter(|c| c.contains("BODY.PEEK[HEADER]"))
        .count();
    assert_eq!(
        batched, 1,
        "no parts asked for past the limit: {commands:#?}"
    );
}

/// A server that describes its mail but refuses the sections (`NO`): the mails of that
/// command are read whole on the same connection and imported; the run does not stop at
/// that batch (which every later run would meet again).
#[test]
fn refused_sections_are_read_whole_on_the_same_connection() {
    let text = "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL)";
    let mut f = Fake::start(Script {
        bodystructure: Some(format!(
            "({text} \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)"
        )),
        refuse_sections: true,
        ..Script::default()
    });
    let first = f.fulfillment_mail("www.refused1.example.com");
    let second = f.fulfillment_mail("www.refused2.example.com");
    f.server
        .set_messages(vec![honest(1, first), honest(2, second)]);
    let run = f.poll();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(
        imported(&run.json()),
        vec!["www.refused1.example.com", "www.refused2.example.com"]
    );
    let commands = f.server.commands();
    let logins = commands.iter().filter(|c| c.starts_with("LOGIN")).count();
    assert_eq!(logins, 1, "the same connection: {commands:#?}");
}
