//! Peak memory of `fulfill import` on hostile mail (issue 11, "memory stays bounded"): mails
//! of about 20 MB in the shapes that made the MIME parser, or the walk after it, build far
//! more than the mail, each imported by the real binary in a child process whose peak RSS
//! the kernel reports when the child is reaped (`wait4`). The bound is 3 × the mail's size
//! + 32 MB, fixed costs (the binary, SQLite, the keys) included.
//!
//! `cargo test --test memory -- --nocapture` prints the figures that README.md quotes.
//! `FULFILL_MEMORY_BIN=/path/to/fulfill` measures another build of the binary instead: the
//! figures are printed before the bound is checked, so a build that fails it still gives them.
#![cfg(target_os = "linux")]

mod support;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use fulfill::extract::Limits;
use support::{Home, samples};

const SIZE: usize = 20_000_000;
const MB: u64 = 1_000_000;
/// A child is never waited on longer than this; debug builds read each mail in seconds.
const CHILD_LIMIT: Duration = Duration::from_secs(180);

const HEAD: &[u8] = b"From: ca@example.com\r\nSubject: hostile\r\nMIME-Version: 1.0\r\n";

/// `head`, then `unit` as many times as fits in [`SIZE`] with `tail` after it.
fn fill(head: &[u8], unit: &[u8], tail: &[u8]) -> Vec<u8> {
    let count = (SIZE - head.len() - tail.len()) / unit.len();
    let mut mail = Vec::with_capacity(SIZE);
    mail.extend_from_slice(head);
    for _ in 0..count {
        mail.extend_from_slice(unit);
    }
    mail.extend_from_slice(tail);
    mail
}

fn with_head(rest: &[u8]) -> Vec<u8> {
    [HEAD, rest].concat()
}

fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = Vec::with_capacity(encoded.len() / 76 * 78 + 78);
    for line in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn zip_of(entries: &[(&str, &[u8], zip::CompressionMethod)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, method) in entries {
        let options = zip::write::SimpleFileOptions::default().compression_method(*method);
        writer.start_file(*name, options).expect("zip entry");
        writer.write_all(bytes).expect("zip write");
    }
    writer.finish().expect("zip").into_inner()
}

/// Bytes that deflate no better than `1 / ratio`, `len` of them: noise, then zeros.
fn compressible(len: usize, ratio: usize) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..len / ratio + len / ratio / 10]);
    bytes
}

/// A way to make a mail hostile.
struct Shape {
    name: &'static str,
    /// The limit whose problem the import must report (`None`: bounded without one).
    limit: Option<&'static str>,
    make: fn() -> Vec<u8>,
}

/// The shapes, each with the limit that stops it (`None`: bounded without one).
fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            name: "2.9 million empty MIME parts",
            limit: Some("max_parts"),
            make: || {
                fill(
                    &with_head(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"),
                    b"--b\r\n\r\n",
                    b"--b--\r\n",
                )
            },
        },
        Shape {
            name: "2.5 million header lines",
            limit: Some("max_header_size"),
            make: || fill(HEAD, b"X-a: b\r\n", b"\r\nbody\r\n"),
        },
        Shape {
            name: "6.7 million header lines of 3 bytes",
            limit: Some("max_header_size"),
            make: || fill(HEAD, b"a:\n", b"\r\nbody\r\n"),
        },
        Shape {
            name: "350 000 nested multiparts",
            limit: Some("max_parts"),
            make: || {
                let mut mail = HEAD.to_vec();
                let mut level = 0;
                while mail.len() < SIZE - 100 {
                    mail.extend_from_slice(
                        format!(
                            "Content-Type: multipart/mixed; boundary={level:x}\r\n\r\n--{level:x}\r\n"
                        )
                        .as_bytes(),
                    );
                    level += 1;
                }
                mail
            },
        },
        Shape {
            name: "620 000 nested forwards",
            limit: Some("max_parts"),
            make: || fill(HEAD, b"Content-Type: message/rfc822\r\n\r\n", b""),
        },
        Shape {
            name: "2 million empty parts in a base64 forward",
            limit: Some("max_text_size"),
            make: || {
                let inner = fill(
                    &with_head(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"),
                    b"--b\r\n\r\n",
                    b"",
                );
                let mut mail = with_head(
                    b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                );
                let encoded = base64_lines(&inner[..SIZE * 3 / 4 - 100]);
                mail.extend_from_slice(&encoded[..(SIZE - mail.len()) / 78 * 78]);
                mail
            },
        },
        Shape {
            name: "forwards in quoted-printable, three deep",
            limit: Some("max_text_size"),
            make: || {
                let forward: &[u8] =
                    b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n";
                let head = [HEAD, forward, HEAD, forward, HEAD, forward, HEAD, b"\r\n"].concat();
                fill(&head, b"hello world\r\n", b"")
            },
        },
        Shape {
            name: "an address list of 10 million",
            limit: Some("max_header_size"),
            make: || fill(b"Subject: x\r\nFrom: ", b"a,", b"\r\n\r\nbody\r\n"),
        },
        Shape {
            name: "5 million Content-Type parameters",
            limit: Some("max_header_size"),
            make: || {
                fill(
                    &with_head(b"Content-Type: text/plain"),
                    b";a=b",
                    b"\r\n\r\nbody\r\n",
                )
            },
        },
        Shape {
            name: "HTML in windows-1252 that triples when decoded",
            limit: Some("max_text_size"),
            make: || {
                fill(
                    &with_head(b"Content-Type: text/html; charset=windows-1252\r\n\r\n"),
                    b"\x80&amp;<br>",
                    b"",
                )
            },
        },
        Shape {
            name: "600 000 empty PEM blocks",
            limit: Some("max_text_size"),
            make: || {
                fill(
                    &with_head(b"\r\n"),
                    b"-----BEGIN X-----\n-----END X-----\n",
                    b"",
                )
            },
        },
        Shape {
            name: "binary attachment, BEGIN then bytes that are not UTF-8",
            limit: None,
            make: || {
                fill(
                    &with_head(
                        b"Content-Type: application/octet-stream\r\n\r\n-----BEGIN CERTIFICATE-----\n",
                    ),
                    b"\xff",
                    b"",
                )
            },
        },
        Shape {
            name: "a zip of 12 entries at max_zip_entry_size",
            limit: None,
            make: || {
                let limit = Limits::default().max_zip_entry_size as usize;
                let ratio = Limits::default().max_zip_ratio as usize;
                let entry = compressible(limit - 64 * 1024, ratio / 2);
                let names: Vec<String> = (0..12).map(|i| format!("{i}.bin")).collect();
                let entries: Vec<(&str, &[u8], zip::CompressionMethod)> = names
                    .iter()
                    .map(|name| (name.as_str(), &entry[..], zip::CompressionMethod::Deflated))
                    .collect();
                let mut mail = with_head(
                    b"Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                );
                mail.extend_from_slice(&base64_lines(&zip_of(&entries)));
                mail
            },
        },
        Shape {
            name: "a zip in a zip, entries at max_zip_entry_size",
            limit: None,
            make: || {
                let limit = Limits::default().max_zip_entry_size as usize;
                let ratio = Limits::default().max_zip_ratio as usize;
                let deflate = zip::CompressionMethod::Deflated;
                let entry = compressible(limit - 64 * 1024, ratio / 2);
                let inner = zip_of(&[("big.bin", &entry, deflate)]);
                let padding = vec![0u8; limit - inner.len() - 64 * 1024];
                let inner = zip_of(&[
                    ("big.bin", &entry, deflate),
                    ("pad.bin", &padding, zip::CompressionMethod::Stored),
                ]);
                let outer = zip_of(&[("inner.zip", &inner, deflate)]);
                let mut mail = with_head(
                    b"Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                );
                mail.extend_from_slice(&base64_lines(&outer));
                mail
            },
        },
    ]
}

/// Set for the launcher run of this test binary: the home and the mail, one a line.
const LAUNCH: &str = "FULFILL_MEMORY_LAUNCH";
/// Marks the launcher's figures in its output (after libtest's "test launcher ... ").
const FIGURES: &str = "fulfill-memory:";

/// Imports `mail` with the binary in a launcher process, and returns fulfill's exit code,
/// its peak RSS in bytes and the launcher's own peak before it started fulfill.
///
/// The kernel counts a child's peak RSS from its spawn, when it still shares its parent's
/// memory, so the figure is at least the parent's peak at that moment; this test, which
/// built a 20 MB mail, holds far more than fulfill needs. The launcher is this test binary
/// started afresh ([`launcher`]), small when it starts fulfill.
fn import_and_measure(home: &Home, mail: &Path) -> (Option<i32>, u64, u64) {
    let output = support::env::command(std::env::current_exe().expect("the test binary"))
        .args(["launcher", "--exact", "--nocapture", "--test-threads=1"])
        .env(
            LAUNCH,
            format!("{}\n{}", home.path().display(), mail.display()),
        )
        .stdin(Stdio::null())
        .output()
        .expect("the launcher starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let figures = stdout
        .lines()
        .find_map(|line| line.split_once(FIGURES).map(|(_, figures)| figures))
        .unwrap_or_else(|| {
            panic!(
                "{}: no figures from the launcher:\n{stdout}\n{}",
                mail.display(),
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let numbers: Vec<i64> = figures
        .split_whitespace()
        .map(|n| n.parse().expect("a number"))
        .collect();
    let [code, peak, launcher_peak] = numbers[..] else {
        panic!("figures: {figures}")
    };
    let code = (code >= 0).then_some(code as i32);
    (code, peak as u64, launcher_peak as u64)
}

/// Not a test of its own: what [`import_and_measure`] runs, in a fresh process, when
/// [`LAUNCH`] is set. Starts fulfill, reaps it with `wait4`, and prints its exit code (-1
/// for a signal), its peak RSS and the launcher's own peak RSS before it, in bytes.
#[test]
fn launcher() {
    let Some(launch) = std::env::var_os(LAUNCH) else {
        return;
    };
    let launch = launch.into_string().expect("UTF-8 paths");
    let (home, mail) = launch.split_once('\n').expect("home and mail");
    let home = Path::new(home);
    let binary = std::env::var_os("FULFILL_MEMORY_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_fulfill").into());
    let own_peak = own_peak();
    // Reaped with wait4 below, for its resource usage, which std does not give.
    #[allow(clippy::zombie_processes)]
    let child = support::process_in(home, binary)
        .env_remove(LAUNCH)
        .arg("--config")
        .arg(samples().join("config.toml"))
        .arg("--db")
        .arg(home.join("fulfill.db"))
        .arg("--json")
        .args(["import", "--no-upload"])
        .arg(mail)
        .stdin(Stdio::null())
        .stdout(File::create(home.join("stdout")).expect("stdout file"))
        .stderr(File::create(home.join("stderr")).expect("stderr file"))
        .spawn()
        .expect("fulfill starts");
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    let started = Instant::now();
    let mut status = 0;
    // SAFETY: rusage is plain data, for which zeroes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our child, not yet reaped; the pointers are to live locals.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(reaped >= 0, "wait4: {}", std::io::Error::last_os_error());
        if reaped == pid {
            break;
        }
        if started.elapsed() > CHILD_LIMIT {
            // SAFETY: as above; the child is killed, then reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::wait4(pid, &mut status, 0, &mut usage);
            }
            panic!("{mail}: still running after {CHILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // Linux reports ru_maxrss in KiB.
    println!("{FIGURES} {code} {} {own_peak}", usage.ru_maxrss * 1024);
}

/// This process's peak RSS so far, in bytes.
fn own_peak() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib * 1024
}

#[test]
fn peak_rss_on_hostile_mail_stays_within_three_times_its_size_plus_32_mb() {
    let mut rows = Vec::new();
    for Shape {
        name: shape,
        limit,
        make,
    } in shapes()
    {
        let home = Home::new();
        let mail_path = home.path().join("hostile.eml");
        let mail = make();
        let size = mail.len() as u64;
        std::fs::write(&mail_path, &mail).expect("mail written");
        drop(mail);
        let (code, peak, launcher_peak) = import_and_measure(&home, &mail_path);
        assert!(
            launcher_peak < peak,
            "{shape}: fulfill's figure ({peak} bytes) may be the launcher's own ({launcher_peak})"
        );
        let stdout = std::fs::read_to_string(home.path().join("stdout")).unwrap_or_default();
        let results: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "{shape}: stdout is not JSON ({e}): {stdout}\nstderr: {}",
                std::fs::read_to_string(home.path().join("stderr")).unwrap_or_default()
            )
        });
        let problems = results[0]["problems"].to_string();
        rows.push((shape, limit, size, peak, code, problems));
    }

    println!("| shape | mail | peak RSS | bound (3 × mail + 32 MB) | limits reported |");
    println!("|---|---|---|---|---|");
    for (shape, _, size, peak, _, problems) in &rows {
        let mut named: Vec<&str> = problems
            .split('(')
            .skip(1)
            .filter_map(|rest| rest.split_once(')').map(|(name, _)| name))
            .filter(|name| name.starts_with("max_"))
            .collect();
        named.dedup();
        println!(
            "| {shape} | {:.1} MB | {:.0} MB | {:.0} MB | {} |",
            *size as f64 / MB as f64,
            *peak as f64 / MB as f64,
            (3 * size + 32 * MB) as f64 / MB as f64,
            named.join(", ")
        );
    }
    for (shape, limit, size, peak, code, problems) in rows {
        assert!(
            peak <= 3 * size + 32 * MB,
            "{shape}: peak RSS {peak} bytes for a {size}-byte mail"
        );
        // Read, and no certificate found: exit 4 (src/exit.rs).
        assert_eq!(code, Some(4), "{shape}: {problems}");
        if let Some(limit) = limit {
            assert!(
                problems.contains(&format!("({limit})")),
                "{shape}: the problems name {limit}: {problems}"
            );
        }
    }
}
