//! What a `fulfill poll` costs against a real Dovecot over TLS on loopback, on issue 14's
//! mixed mailbox: one mail in ten carries a 300 KB PDF, five carry a certificate (in five of
//! the shapes of tests/support/shapes.rs), the rest are short notes. Printed side by side
//! for each size, in one run:
//!
//! - fulfill's first scan: time, and bytes on the wire;
//! - the reference a client that reads everything can reach: one `UID FETCH 1:*
//!   BODY.PEEK[]` of every body over the same kind of connection (IMAPS, native-tls), timed
//!   from connect to the last byte, its bytes counted under TLS as fulfill counts its own;
//! - `UID FETCH 1:* BODYSTRUCTURE` of every mail, the same way;
//! - the no-news poll (the cron case), which must stay O(1).
//!
//! It asserts the five certificates were imported. `cargo bench --bench mailbox`; sizes from
//! `FULFILL_BENCH_SIZES` (default 5000,100000; 100 000 mails are about 4 GB of Maildir, removed
//! before the next size). Needs Dovecot (scripts/test installs it). Figures are in the README.

#[path = "../tests/support/dovecot.rs"]
#[allow(dead_code)]
mod dovecot;
#[path = "../tests/support/shapes.rs"]
#[allow(dead_code)]
mod shapes;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shapes::{Pki, Shape};

/// Runs a no-news poll this many times and reports the median.
const QUIET_RUNS: usize = 5;
/// One mail in this many carries the PDF.
const PDF_EVERY: usize = 10;
/// The certificate mails, spread over the mailbox; those at an even index carry the PDF too.
const CERTIFICATE_SHAPES: [Shape; 5] = [
    Shape::InlinePem,
    Shape::Der,
    Shape::ZipPem,
    Shape::Forwarded,
    Shape::NamelessOctetStream,
];

fn unrelated_mail(i: usize) -> String {
    format!(
        "From: sender{}@example.com\r\nTo: certs@example.com\r\nSubject: Message {i}\r\n\
         Date: Sun, 29 Nov 2026 09:00:00 +0000\r\nMessage-ID: <bench{i}@example.com>\r\n",
        i % 97
    )
}

/// The mixed mailbox: what mail `i` is, and which certificates it must give.
struct Mixed {
    pki: Pki,
    certificates: Vec<(usize, Shape, shapes::Issued)>,
    pdf: String,
}

impl Mixed {
    fn new(count: usize, keys: &Path) -> Mixed {
        let pki = Pki::new();
        let certificates = CERTIFICATE_SHAPES
            .iter()
            .enumerate()
            .map(|(k, shape)| {
                let issued = pki.issue(&format!("www.bench{k}.example.com"));
                issued.write_key(keys);
                (
                    count * k / CERTIFICATE_SHAPES.len() + count / 20,
                    *shape,
                    issued,
                )
            })
            .collect();
        Mixed {
            pki,
            certificates,
            pdf: shapes::pdf_base64(),
        }
    }

    fn mail(&self, i: usize) -> Vec<u8> {
        let certificate = self.certificates.iter().position(|(at, ..)| *at == i);
        if let Some(k) = certificate {
            let (_, shape, issued) = &self.certificates[k];
            let pdf = (k % 2 == 0).then_some(self.pdf.as_str());
            return self.pki.mail(*shape, issued, pdf);
        }
        let note = shapes::text(&format!("An ordinary message, number {i}.\r\n"));
        let body = if i % PDF_EVERY == PDF_EVERY - 1 {
            shapes::multipart("mixed", &[note, shapes::pdf_part(&self.pdf)])
        } else {
            note
        };
        format!("{}MIME-Version: 1.0\r\n{body}", unrelated_mail(i)).into_bytes()
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.certificates.iter().map(|c| c.2.name.clone()).collect();
        names.sort();
        names
    }
}

struct Run {
    elapsed: Duration,
    bytes: u64,
    new_messages: u64,
    imported: Vec<String>,
}

fn write_config(dovecot: &dovecot::Dovecot, home: &Path, root_pem: &str) -> std::path::PathBuf {
    let config = home.join("config.toml");
    std::fs::write(home.join("root.pem"), root_pem).expect("write the root");
    std::fs::write(
        &config,
        format!(
            "[mailbox]\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\nusername = \"{}\"\n\
             password_cmd = \"echo {}\"\ntimeout = \"10m\"\nrun_timeout = \"1h\"\n\
             [keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n",
            dovecot.imaps_port(),
            dovecot.cert_pem_path().display(),
            dovecot.user(),
            dovecot.password(),
            home.join("keys").display(),
            home.join("root.pem").display()
        ),
    )
    .expect("write config");
    config
}

fn poll(home: &Path) -> Run {
    let started = Instant::now();
    // Nothing of the developer's environment (config, database, credentials) reaches it.
    let output = dovecot::env::command(env!("CARGO_BIN_EXE_fulfill"))
        .env("HOME", home)
        .arg("--config")
        .arg(home.join("config.toml"))
        .args(["--json", "poll"])
        .output()
        .expect("run fulfill");
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "poll failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("poll --json");
    let results = report["results"].as_array().cloned().unwrap_or_default();
    let mut imported: Vec<String> = results
        .iter()
        .filter(|r| r["outcome"] == "imported")
        .filter_map(|r| r["common_name"].as_str().map(str::to_string))
        .collect();
    imported.sort();
    Run {
        elapsed,
        bytes: report["bytes_read"].as_u64().unwrap_or(0)
            + report["bytes_written"].as_u64().unwrap_or(0),
        new_messages: report["new_messages"].as_u64().unwrap_or(0),
        imported,
    }
}

/// A TCP stream that counts the bytes under TLS, as fulfill's own (mailbox/stream.rs).
#[derive(Debug)]
struct Counted {
    tcp: TcpStream,
    bytes: Arc<AtomicU64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tcp.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.tcp.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

type Connection = BufReader<native_tls::TlsStream<Counted>>;

/// A minimal IMAP client's one command over IMAPS, from connect to the last byte of
/// `fetch`'s answer: login, EXAMINE INBOX, `fetch`. Returns the time, the bytes on the wire
/// (both ways, under TLS) and the FETCH responses seen.
fn reference_fetch(server: &dovecot::Dovecot, fetch: &str) -> (Duration, u64, usize) {
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tcp = TcpStream::connect((dovecot::IMAPS_HOST, server.imaps_port())).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(600)))
        .expect("read timeout");
    let counted = Counted {
        tcp,
        bytes: Arc::clone(&bytes),
    };
    let tls = server
        .tls_connector()
        .connect(dovecot::TLS_NAME, counted)
        .expect("TLS with dovecot");
    let mut connection = BufReader::with_capacity(256 * 1024, tls);
    let mut greeting = String::new();
    connection.read_line(&mut greeting).expect("greeting");
    assert!(greeting.starts_with("* OK"), "{greeting}");
    let login = format!("LOGIN \"{}\" \"{}\"", server.user(), server.password());
    command(&mut connection, "a1", &login);
    command(&mut connection, "a2", "EXAMINE INBOX");
    let responses = command(&mut connection, "a3", fetch);
    let elapsed = started.elapsed();
    let total = bytes.load(Ordering::Relaxed);
    command(&mut connection, "a4", "LOGOUT");
    (elapsed, total, responses)
}

/// Sends a tagged command and reads to its tagged OK, skipping literals (`{N}` at a line's
/// end, then N bytes). Returns how many untagged FETCH responses came.
fn command(connection: &mut Connection, tag: &str, command: &str) -> usize {
    let tls = connection.get_mut();
    tls.write_all(format!("{tag} {command}\r\n").as_bytes())
        .and_then(|()| tls.flush())
        .expect("send a command");
    let mut fetches = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        connection.read_until(b'\n', &mut line).expect("read");
        assert!(
            !line.is_empty(),
            "{command}: the server closed the connection"
        );
        if line.starts_with(b"* ") && line.windows(7).any(|w| w == b" FETCH ") {
            fetches += 1;
        }
        if let Some(n) = literal_size(&line) {
            let skipped = std::io::copy(&mut connection.by_ref().take(n), &mut std::io::sink())
                .expect("read a literal");
            assert_eq!(skipped, n, "{command}: the literal was cut short");
            continue;
        }
        if let Some(status) = line.strip_prefix(format!("{tag} ").as_bytes()) {
            let status = String::from_utf8_lossy(status);
            assert!(status.starts_with("OK"), "{command}: {status}");
            return fetches;
        }
    }
}

/// N of a line that ends in `{N}` CRLF.
fn literal_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"}\r\n")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&line[open + 1..]).ok()?.parse().ok()
}

fn megabytes(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

fn share(bytes: u64, of: u64) -> String {
    format!("{:.1} %", bytes as f64 * 100.0 / of as f64)
}

fn bench(count: usize) {
    let mut server = dovecot::Dovecot::start().expect("dovecot starts (scripts/test installs it)");
    let home = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(home.path().join("keys")).expect("keys dir");
    let mixed = Mixed::new(count, &home.path().join("keys"));
    write_config(&server, home.path(), &mixed.pki.root.pem);
    let filled = Instant::now();
    let mut size = 0u64;
    server.fill_maildir(count, |i| {
        let mail = mixed.mail(i);
        size += mail.len() as u64;
        mail
    });
    let fill_time = filled.elapsed();
    // Let Dovecot index the folder outside the measured runs, as a live mailbox is.
    let _ = server.count("INBOX");

    // fulfill first: a BODYSTRUCTURE fetched before would be in Dovecot's cache for it.
    let first = poll(home.path());
    assert_eq!(first.new_messages as usize, count);
    assert_eq!(
        first.imported,
        mixed.names(),
        "the five certificates are imported"
    );
    let (bulk_time, bulk_bytes, bodies) = reference_fetch(&server, "UID FETCH 1:* BODY.PEEK[]");
    assert_eq!(bodies, count, "the bulk fetch read every mail");
    let (structure_time, structure_bytes, structures) =
        reference_fetch(&server, "UID FETCH 1:* BODYSTRUCTURE");
    assert_eq!(structures, count);
    // fulfill's first scan again, with a new database, now that Dovecot has described every
    // mail once: the state of a live mailbox whose mail clients asked for the structures
    // (Dovecot keeps them in dovecot.index.cache).
    forget_database(home.path());
    let warm = poll(home.path());
    assert_eq!(
        warm.imported,
        mixed.names(),
        "imported again, from a new database"
    );
    let mut quiet: Vec<Run> = (0..QUIET_RUNS).map(|_| poll(home.path())).collect();
    quiet.sort_by_key(|r| r.elapsed);
    let median = &quiet[QUIET_RUNS / 2];
    assert_eq!(median.new_messages, 0);

    println!(
        "\n{count} mails, {} ({} with a 300 KB PDF, {} certificate mails, all imported):\n",
        megabytes(size),
        count / PDF_EVERY,
        CERTIFICATE_SHAPES.len()
    );
    println!("| what | time | bytes read | of the mailbox |\n|---|---|---|---|");
    let row = |what: &str, time: Duration, bytes: u64| {
        let time = time.as_secs_f64();
        let bytes_share = share(bytes, size);
        println!(
            "| {what} | {time:.2} s | {} | {bytes_share} |",
            megabytes(bytes)
        );
    };
    row(
        "`fulfill poll`, first scan (Dovecot has described no mail yet)",
        first.elapsed,
        first.bytes,
    );
    row(
        "`fulfill poll`, first scan (Dovecot has described every mail once)",
        warm.elapsed,
        warm.bytes,
    );
    row("bulk `UID FETCH 1:* BODY.PEEK[]`", bulk_time, bulk_bytes);
    row(
        "`UID FETCH 1:* BODYSTRUCTURE`",
        structure_time,
        structure_bytes,
    );
    row(
        &format!("`fulfill poll`, no news (median of {QUIET_RUNS})"),
        median.elapsed,
        median.bytes,
    );
    println!(
        "\nfirst scan / bulk fetch: {:.2} cold, {:.2} warm (goal: at most 0.5); bytes: {} \
         (goal: at most 15 %)",
        first.elapsed.as_secs_f64() / bulk_time.as_secs_f64(),
        warm.elapsed.as_secs_f64() / bulk_time.as_secs_f64(),
        share(first.bytes, size)
    );
    eprintln!("(filled {count} mails in {:.1} s)", fill_time.as_secs_f64());
    // The Maildir goes with the server's temp dir: 100 000 mails are about 4 GB.
    server.stop();
}

/// Removes fulfill's database under `home`, so that the next poll is a first scan again.
fn forget_database(home: &std::path::Path) {
    let folder = home.join(".local/share/fulfill");
    for name in ["fulfill.db", "fulfill.db-wal", "fulfill.db-shm"] {
        match std::fs::remove_file(folder.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {name}: {e}"),
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let sizes: Vec<usize> = std::env::var("FULFILL_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![5_000, 100_000]);
    for count in sizes {
        bench(count);
    }
}
