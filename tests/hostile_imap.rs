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
use support::Home;

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
        Run {
            code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
            // Linux counts ru_maxrss in KiB.
            max_rss: usage.ru_maxrss as u64 * 1024,
        }
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
}
