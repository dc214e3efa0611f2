//! What a `fulfill poll` costs against a real Dovecot, at 100 and at 100 000 mails: the
//! first scan, and a run with nothing new (the cron case), in time and bytes on the wire.
//!
//! `cargo bench --bench mailbox` (set FULFILL_BENCH_SIZES=100,1000 for a quick run). Needs
//! Dovecot (scripts/test installs it). Figures are in the README.

#[path = "../tests/support/dovecot.rs"]
#[allow(dead_code)]
mod dovecot;

use std::time::{Duration, Instant};

/// Runs a no-news poll this many times and reports the median.
const QUIET_RUNS: usize = 5;

fn unrelated_mail(i: usize) -> Vec<u8> {
    format!(
        "From: sender{}@example.com\r\nTo: certs@example.com\r\nSubject: Message {i}\r\n\
         Date: Sun, 29 Nov 2026 09:00:00 +0000\r\nMessage-ID: <bench{i}@example.com>\r\n\r\n\
         An ordinary message of an ordinary mailbox, number {i}.\r\n",
        i % 97
    )
    .into_bytes()
}

struct Run {
    elapsed: Duration,
    bytes: u64,
    new_messages: u64,
}

fn poll(dovecot: &dovecot::Dovecot, home: &std::path::Path) -> Run {
    let config = home.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[mailbox]\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\nusername = \"{}\"\n\
             password_cmd = \"echo {}\"\ntimeout = \"10m\"\nrun_timeout = \"1h\"\n",
            dovecot.imaps_port(),
            dovecot.cert_pem_path().display(),
            dovecot.user(),
            dovecot.password()
        ),
    )
    .expect("write config");
    let started = Instant::now();
    // Nothing of the developer's environment (config, database, credentials) reaches it.
    let output = dovecot::env::command(env!("CARGO_BIN_EXE_fulfill"))
        .env("HOME", home)
        .arg("--config")
        .arg(&config)
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
    Run {
        elapsed,
        bytes: report["bytes_read"].as_u64().unwrap_or(0)
            + report["bytes_written"].as_u64().unwrap_or(0),
        new_messages: report["new_messages"].as_u64().unwrap_or(0),
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let sizes: Vec<usize> = std::env::var("FULFILL_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 100_000]);
    println!(
        "| mails in INBOX | first scan | first scan bytes | no-news poll (median of {QUIET_RUNS}) | no-news bytes |"
    );
    println!("|---|---|---|---|---|");
    for count in sizes {
        let mut server =
            dovecot::Dovecot::start().expect("dovecot starts (scripts/test installs it)");
        let filled = Instant::now();
        server.fill_maildir(count, unrelated_mail);
        let fill_time = filled.elapsed();
        // Let Dovecot index the folder outside the measured runs, as a live mailbox is.
        let _ = server.count("INBOX");
        let home = tempfile::tempdir().expect("temp dir");
        let first = poll(&server, home.path());
        assert_eq!(first.new_messages as usize, count);
        let mut quiet: Vec<Run> = (0..QUIET_RUNS)
            .map(|_| poll(&server, home.path()))
            .collect();
        quiet.sort_by_key(|r| r.elapsed);
        let median = &quiet[QUIET_RUNS / 2];
        assert_eq!(median.new_messages, 0);
        println!(
            "| {count} | {:.2} s | {} | {:.1} ms | {} |",
            first.elapsed.as_secs_f64(),
            first.bytes,
            median.elapsed.as_secs_f64() * 1000.0,
            median.bytes
        );
        eprintln!("(filled {count} mails in {:.1} s)", fill_time.as_secs_f64());
        server.stop();
    }
}
