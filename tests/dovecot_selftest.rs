//! Self-test of `tests/support/dovecot.rs`: the private Dovecot other integration tests use.
//! Without Dovecot each test prints "skipped: dovecot not available" and passes, except under
//! `CI=true`, where a missing server fails.

#[allow(dead_code)]
#[path = "support/dovecot.rs"]
mod dovecot;

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dovecot::{Dovecot, Options, ServerCert, dovecot_or_skip};
use imap::extensions::idle::{WaitOutcome, stop_on_any};

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: CA <noreply@ca.example>\r\nTo: admin@example.com\r\nSubject: {subject}\r\n\
         Date: Sat, 29 Nov 2025 10:00:00 +0000\r\nMessage-ID: <{subject}@ca.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nYour certificate is ready: {subject}\r\n"
    )
    .into_bytes()
}

#[test]
fn starts_and_logs_in_over_imaps_and_starttls() {
    let Some(d) = dovecot_or_skip() else { return };
    eprintln!(
        "dovecot started in {:?} (IMAPS {}, IMAP {}, dir {})",
        d.last_start_time(),
        d.imaps_port(),
        d.imap_port(),
        d.dir().display()
    );
    assert_eq!(d.host(), "127.0.0.1");
    assert_eq!(d.starttls_host(), "127.0.0.2");
    assert_ne!(d.imaps_port(), d.imap_port());
    assert!(d.is_running());

    let mut imaps = d
        .connect_imaps()
        .expect("IMAPS")
        .login(d.user(), d.password())
        .expect("login");
    let caps = imaps.capabilities().expect("CAPABILITY");
    for cap in ["IDLE", "UIDPLUS", "MOVE"] {
        assert!(caps.has_str(cap), "no {cap}");
    }
    drop(caps);
    imaps.select("INBOX").expect("SELECT INBOX");
    imaps.logout().expect("LOGOUT");

    let mut starttls = d
        .connect_starttls()
        .expect("STARTTLS")
        .login(d.user(), d.password())
        .expect("login");
    starttls.select("INBOX").expect("SELECT INBOX");
    starttls.logout().expect("LOGOUT");
    let _ = d.login_starttls().logout();

    // The certificate also verifies for the IP address, and from its PEM file (`ca_file`).
    let pem = std::fs::read(d.cert_pem_path()).expect("cert PEM");
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(&pem).expect("PEM"))
        .build()
        .unwrap();
    let client = d
        .connect_imaps_with(&connector, "127.0.0.1")
        .expect("IMAPS verified for 127.0.0.1");
    let _ = client
        .login(d.user(), d.password())
        .expect("login")
        .logout();
    let client = d
        .connect_starttls_with(&connector, "127.0.0.2")
        .expect("STARTTLS verified for 127.0.0.2");
    let _ = client
        .login(d.user(), d.password())
        .expect("login")
        .logout();

    // The pin is the SHA-256 of the certificate the server really presents.
    let tcp = TcpStream::connect((d.host(), d.imaps_port())).unwrap();
    let tls = connector.connect("localhost", tcp).expect("TLS");
    let der = tls.peer_certificate().unwrap().unwrap().to_der().unwrap();
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&der)), d.cert_sha256());
    assert_eq!(d.cert_sha256().len(), 64);

    let log = d.log();
    assert!(
        log.contains("Login: user=<fulfill-test>, method=PLAIN"),
        "{log}"
    );
    assert!(log.contains(", TLS,"), "{log}");
    // Every login was over TLS, also on the STARTTLS port (lip=127.0.0.2).
    let logins: Vec<&str> = log.lines().filter(|l| l.contains(" Login: ")).collect();
    assert!(logins.iter().any(|l| l.contains("lip=127.0.0.2")), "{log}");
    assert!(logins.iter().all(|l| l.contains(", TLS,")), "{log}");
}

/// AUTHENTICATE PLAIN's one response: authorization id (empty), user, password.
struct PlainAuth;

impl imap::Authenticator for PlainAuth {
    type Response = String;

    fn process(&self, _challenge: &[u8]) -> String {
        format!("\0{}\0{}", dovecot::USER, dovecot::PASSWORD)
    }
}

#[test]
fn wrong_password_and_logins_without_starttls_are_refused() {
    let Some(d) = dovecot_or_skip() else { return };
    match d
        .connect_imaps()
        .expect("IMAPS")
        .login(d.user(), "not-the-password")
    {
        Err((imap::Error::No(no), _)) => {
            assert!(no.information.contains("Authentication failed"), "{no:?}")
        }
        Err((e, _)) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("wrong password accepted"),
    }
    match d
        .connect_imaps()
        .expect("IMAPS")
        .login("nobody-here", d.password())
    {
        Err((imap::Error::No(_), _)) => {}
        other => panic!("unknown user: {:?}", other.map(|_| ()).map_err(|(e, _)| e)),
    }

    // On the plain port, a login that did not start TLS first is refused, with the right
    // password, by LOGIN and by AUTHENTICATE PLAIN alike. That is what lets a STARTTLS test
    // fail when a client skips STARTTLS. (Dovecot would accept it on a 127.0.0.1 to
    // 127.0.0.1 connection, which it counts as "secured": hence 127.0.0.2.)
    let plain_client = || {
        let tcp = TcpStream::connect((d.starttls_host(), d.imap_port())).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut plain = imap::Client::new(tcp);
        plain.read_greeting().unwrap();
        plain
    };
    let mut plain = plain_client();
    let capabilities = plain.capabilities().unwrap();
    assert!(capabilities.has_str("STARTTLS"));
    assert!(
        capabilities.has_str("LOGINDISABLED"),
        "the plain port allows logins before STARTTLS"
    );
    drop(capabilities);
    match plain.login(d.user(), d.password()) {
        Err((imap::Error::No(_) | imap::Error::Bad(_), _)) => {}
        Err((e, _)) => panic!("LOGIN without STARTTLS: unexpected error {e:?}"),
        Ok(_) => panic!("LOGIN without STARTTLS was accepted\n{}", d.log()),
    }
    match plain_client().authenticate("PLAIN", &PlainAuth) {
        Err((imap::Error::No(_) | imap::Error::Bad(_), _)) => {}
        Err((e, _)) => panic!("AUTHENTICATE PLAIN without STARTTLS: unexpected error {e:?}"),
        Ok(_) => panic!(
            "AUTHENTICATE PLAIN without STARTTLS was accepted\n{}",
            d.log()
        ),
    }
    // The same password after STARTTLS on the same port logs in.
    let _ = d.login_starttls().logout();
    let log = d.log();
    assert!(
        log.contains("Plaintext authentication disabled")
            || log.contains("SSL required for authentication"),
        "{log}"
    );
    assert!(!log.contains(", secured,"), "{log}");
}

#[test]
fn append_gives_increasing_uids_and_flags_read_back() {
    let Some(d) = dovecot_or_skip() else { return };
    let uids: Vec<u32> = (0..3)
        .map(|i| d.append("INBOX", &message(&format!("m{i}"))))
        .collect();
    assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
    let more = d.append_many("INBOX", [message("m3"), message("m4")]);
    assert_eq!(more.len(), 2);
    assert!(uids[2] < more[0] && more[0] < more[1], "{uids:?} {more:?}");
    assert_eq!(d.count("INBOX"), 5);
    assert_eq!(d.uids("INBOX"), [uids.clone(), more.clone()].concat());

    assert_eq!(d.flags("INBOX", uids[0]), Some(vec![]));
    let flagged = d.append_with_flags("INBOX", &message("seen"), &["\\Seen", "$Fulfilled"]);
    let mut flags = d.flags("INBOX", flagged).expect("message exists");
    flags.sort();
    assert_eq!(flags, ["$Fulfilled", "\\Seen"]);
    assert_eq!(
        d.keywords("INBOX", flagged),
        Some(vec!["$Fulfilled".to_string()])
    );
    d.add_flags("INBOX", uids[1], &["\\Flagged", "Imported"]);
    let mut flags = d.flags("INBOX", uids[1]).unwrap();
    flags.sort();
    assert_eq!(flags, ["Imported", "\\Flagged"]);
    assert_eq!(d.flags("INBOX", 999_999), None);

    d.create_folder("Certs");
    let uid = d.append("Certs", &message("in-folder"));
    assert_eq!(uid, 1);
    assert_eq!(d.count("Certs"), 1);
    assert!(
        d.folder_path("Certs").join("cur").is_dir() || d.folder_path("Certs").join("new").is_dir()
    );
}

#[test]
fn idle_is_woken_by_an_append_from_another_connection() {
    let Some(d) = dovecot_or_skip() else { return };
    let mut session = d.login();
    session.select("INBOX").unwrap();
    // No IDLE yet: the server says so, and a wait for one ends empty-handed.
    assert!(!d.is_idling());
    assert!(!d.wait_for_idle(Duration::from_millis(50)));

    // Nothing arrives: IDLE ends by its timeout.
    let began = Instant::now();
    let outcome = session
        .idle()
        .timeout(Duration::from_millis(700))
        .keepalive(false)
        .wait_while(stop_on_any)
        .expect("IDLE");
    assert_eq!(outcome, WaitOutcome::TimedOut);
    assert!(began.elapsed() < Duration::from_secs(5));

    // A delivery on another connection, made once the server has the IDLE (seen from its
    // process, not guessed with a sleep), wakes it: MailboxChanged, not TimedOut.
    let idle_timeout = Duration::from_secs(60);
    let began = Instant::now();
    let (outcome, uid) = std::thread::scope(|scope| {
        let deliver = scope.spawn(|| {
            assert!(
                d.wait_for_idle(idle_timeout),
                "the server never saw the IDLE\n{}",
                d.log()
            );
            d.append("INBOX", &message("wake-up"))
        });
        let outcome = session
            .idle()
            .timeout(idle_timeout)
            .keepalive(false)
            .wait_while(stop_on_any)
            .expect("IDLE");
        (outcome, deliver.join().unwrap())
    });
    let waited = began.elapsed();
    eprintln!("IDLE woke after {waited:?}");
    assert_eq!(outcome, WaitOutcome::MailboxChanged);
    assert!(waited < idle_timeout, "woken only after {waited:?}");
    let found = session.uid_search("ALL").unwrap();
    assert!(found.contains(&uid), "{found:?}");
    session.logout().unwrap();
}

#[test]
fn kill_hard_and_restart_keep_the_mail_store() {
    let Some(mut d) = dovecot_or_skip() else {
        return;
    };
    let first = d.append("INBOX", &message("before-crash-1"));
    let second = d.append_with_flags(
        "INBOX",
        &message("before-crash-2"),
        &["\\Seen", "$Fulfilled"],
    );
    let uidvalidity = d.uidvalidity("INBOX");
    let mut open = d.login();
    open.select("INBOX").unwrap();
    let (old_imaps, old_imap) = (d.imaps_port(), d.imap_port());
    let pid = d.master_pid().expect("running");

    d.kill_hard();
    assert!(!d.is_running());
    assert!(!dovecot::alive(pid));
    assert!(open.noop().is_err(), "a connection survived the crash");
    assert!(
        TcpStream::connect((d.host(), old_imaps)).is_err(),
        "IMAPS still listens after kill"
    );

    let began = Instant::now();
    d.restart();
    eprintln!("restart after kill_hard took {:?}", began.elapsed());
    assert!(d.is_running());
    assert!((d.imaps_port(), d.imap_port()) != (old_imaps, old_imap));
    assert_eq!(d.uids("INBOX"), vec![first, second]);
    assert_eq!(d.uidvalidity("INBOX"), uidvalidity);
    let mut flags = d.flags("INBOX", second).unwrap();
    flags.sort();
    assert_eq!(flags, ["$Fulfilled", "\\Seen"]);
    let third = d.append("INBOX", &message("after-crash"));
    assert!(third > second);

    // A graceful stop and restart too.
    d.stop();
    assert!(!d.is_running());
    d.stop(); // idempotent
    d.restart();
    assert_eq!(d.uids("INBOX"), vec![first, second, third]);
    assert!(!d.log().contains("Panic"), "{}", d.log());
}

#[test]
fn uidvalidity_can_be_changed_three_ways() {
    let Some(mut d) = dovecot_or_skip() else {
        return;
    };

    // 1. DELETE + CREATE over IMAP: a new UIDVALIDITY, the folder empty.
    d.create_folder("Certs");
    d.append_many("Certs", [message("a"), message("b")]);
    let before = d.uidvalidity("Certs");
    let after = d.recreate_folder("Certs");
    assert_ne!(before, after);
    assert_eq!(d.count("Certs"), 0);
    assert_eq!(d.append("Certs", &message("c")), 1);

    // 2. doveadm: an exact value, messages and UIDs kept, while running.
    let uids = d.append_many("INBOX", [message("x"), message("y"), message("z")]);
    let before = d.uidvalidity("INBOX");
    let wanted = before.wrapping_add(1000);
    d.set_uidvalidity("INBOX", wanted);
    assert_eq!(d.uidvalidity("INBOX"), wanted);
    assert_eq!(d.uids("INBOX"), uids);

    // 3. Rebuild (index and uidlist gone, as after a migration): messages kept, a new
    //    UIDVALIDITY, UIDs given anew from 1; flags and keywords kept.
    d.add_flags("INBOX", uids[2], &["\\Seen", "$Fulfilled"]);
    let mut session = d.login();
    session.select("INBOX").unwrap();
    session
        .uid_store(uids[0].to_string(), "+FLAGS.SILENT (\\Deleted)")
        .unwrap();
    session.expunge().unwrap();
    session.logout().unwrap();
    assert_eq!(d.uids("INBOX"), &uids[1..]);
    let began = Instant::now();
    let rebuilt = d.rebuild_folder("INBOX");
    eprintln!(
        "rebuild_folder took {:?}; UIDVALIDITY {wanted} -> {rebuilt}",
        began.elapsed()
    );
    assert_ne!(rebuilt, wanted);
    assert_eq!(d.count("INBOX"), 2);
    let new_uids = d.uids("INBOX");
    assert_eq!(new_uids, [1, 2], "UIDs are given anew");
    let with_flags: Vec<Vec<String>> = new_uids
        .iter()
        .map(|&u| {
            let mut f = d.flags("INBOX", u).unwrap();
            f.sort();
            f
        })
        .collect();
    assert!(
        with_flags.contains(&vec!["$Fulfilled".to_string(), "\\Seen".to_string()]),
        "{with_flags:?}"
    );
    assert!(!d.log().contains("Panic"), "{}", d.log());
}

#[test]
fn fill_maildir_is_indexed_on_select() {
    let Some(d) = dovecot_or_skip() else { return };
    let appended = d.append("INBOX", &message("appended-first"));
    let n = 500;
    let began = Instant::now();
    d.fill_maildir(n, |i| {
        let mut m = message(&format!("bulk-{i}"));
        m.extend(std::iter::repeat_n(b'x', 2000));
        m.extend(b"\r\n");
        m
    });
    let fill = began.elapsed();
    let began = Instant::now();
    let info = d.select_info("INBOX");
    let select = began.elapsed();
    eprintln!(
        "fill_maildir({n}) took {fill:?} (~{:?} for 100 000); first SELECT {select:?} (~{:?} for 100 000)",
        fill * (100_000 / n as u32),
        select * (100_000 / n as u32)
    );
    assert_eq!(info.exists, n as u32 + 1);
    let uids = d.uids("INBOX");
    assert_eq!(uids.len(), n + 1);
    assert_eq!(uids[0], appended);
    assert_eq!(
        d.flags("INBOX", uids[1]),
        Some(vec![]),
        "filled mail is unseen"
    );

    // Message bodies come back whole.
    let mut session = d.login();
    session.examine("INBOX").unwrap();
    let last = *uids.last().unwrap();
    let fetched = session.uid_fetch(last.to_string(), "BODY.PEEK[]").unwrap();
    let body = fetched
        .iter()
        .next()
        .and_then(|f| f.body())
        .expect("body")
        .to_vec();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("Subject: bulk-"), "{text}");
    assert!(body.ends_with(b"xx\r\n"));
    session.logout().unwrap();

    // Into another folder, before any IMAP client saw it.
    d.fill_maildir_folder("Bulk", 20, |i| message(&format!("folder-{i}")));
    assert_eq!(d.count("Bulk"), 20);
}

#[test]
fn other_certificates_for_negative_tls_tests() {
    let Some(d) = dovecot::dovecot_or_skip_with(Options {
        cert: ServerCert::OtherName("imap.example.invalid".into()),
        ..Options::default()
    }) else {
        return;
    };
    let err = d.connect_imaps().expect_err("name mismatch must fail");
    eprintln!("wrong name: {err}");
    let connector = d.tls_connector();
    let client = d
        .connect_imaps_with(&connector, "imap.example.invalid")
        .expect("verifies for its own name");
    let _ = client.login(d.user(), d.password()).unwrap().logout();
    // The helpers work with every certificate.
    assert_eq!(d.append("INBOX", &message("wrong-name")), 1);
    assert!(d.connect_starttls().is_err());

    let Some(mut e) = Dovecot::start_with_cert(ServerCert::Expired).ok() else {
        return;
    };
    let err = e.connect_imaps().expect_err("expired must fail");
    eprintln!("expired: {err}");
    assert!(format!("{err:?}").contains("expired"), "{err:?}");
    assert_ne!(e.cert_sha256(), d.cert_sha256());
    let expired_pin = e.cert_sha256().to_string();
    e.restart_with_cert(ServerCert::Localhost);
    assert_ne!(e.cert_sha256(), expired_pin);
    let _ = e.login().logout();
    e.restart_with_cert(ServerCert::NotYetValid);
    assert!(e.connect_imaps().is_err());
}

#[test]
fn missing_dovecot_is_an_error_outside_ci_and_a_failure_in_ci() {
    let missing = || Options {
        binary: Some(PathBuf::from("/nonexistent/dovecot")),
        ..Options::default()
    };
    let err = Dovecot::start_with(Options {
        ci: Some(false),
        ..missing()
    })
    .expect_err("no binary");
    assert!(err.contains("/nonexistent/dovecot"), "{err}");
    assert!(
        dovecot::dovecot_or_skip_with(Options {
            ci: Some(false),
            ..missing()
        })
        .is_none()
    );
    let panicked = std::panic::catch_unwind(|| {
        Dovecot::start_with(Options {
            ci: Some(true),
            ..missing()
        })
    });
    assert!(panicked.is_err(), "CI=true must fail on a missing dovecot");
}

#[test]
fn drop_stops_the_server_and_removes_its_dir() {
    let Some(d) = dovecot_or_skip() else { return };
    let pid = d.master_pid().expect("running");
    let dir = d.dir().to_path_buf();
    let port = d.imaps_port();
    let began = Instant::now();
    drop(d);
    eprintln!("stop (drop) took {:?}", began.elapsed());
    assert!(!dovecot::alive(pid));
    assert!(!dir.exists());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn children_start_without_the_fulfill_environment() {
    // The helper itself: every variable of the list is removed, whatever this process has.
    let command = dovecot::env::command("true");
    let removed: Vec<String> = command
        .get_envs()
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    for name in dovecot::env::FULFILL_ENVIRONMENT {
        assert!(
            removed.iter().any(|r| r == name),
            "{name} is not removed: {removed:?}"
        );
    }
    // And the server, started through it, has none of them in its environment.
    let Some(d) = dovecot_or_skip() else { return };
    let pid = d.master_pid().expect("running");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("the master's environ");
    let names: Vec<String> = environ
        .split(|&b| b == 0)
        .filter_map(|entry| entry.split(|&b| b == b'=').next())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect();
    for name in dovecot::env::FULFILL_ENVIRONMENT {
        assert!(!names.iter().any(|n| n == name), "dovecot inherited {name}");
    }
}
