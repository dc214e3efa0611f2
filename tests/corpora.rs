//! Third-party corpora through the extractor and the validator (issue 6, hostile input).
//!
//! The corpora are in the repository, in `tests/data/third-party` (its README, and the
//! README in each folder, give the upstream project, commit and licence):
//!
//! - `mail-parser/`: the MIME library's own malformed, RFC and third-party messages. None
//!   holds a certificate, so the extractor must report none, must not panic, hang or blow
//!   up memory, and must say why when it refuses a message.
//! - `x509-parser/`: odd real certificates, CSRs and CRLs. Each file's kind is written in
//!   [`X509_TABLE`] from `openssl`, not from fulfill's output, so a misread fails here.
//!
//! A missing or empty corpus is a failure everywhere, not a skip: [`corpora_are_present`]
//! checks them on their own, and every test that reads one panics without it. No test here
//! reads anything outside the repository.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use fulfill::extract::{self, ExtractError, Extraction, Limits};
use fulfill::validate::{self, CertificateInfo, Expectations, Verdict};
use time::OffsetDateTime;
use time::macros::datetime;

// ---------------------------------------------------------------------------------------
// Memory: a counting allocator

/// Counts the bytes each thread allocates minus those it frees, and the peak of that since
/// the thread last called [`reset_peak`]. Per thread, because the test harness runs the
/// tests of this file side by side: a global count would charge one test's memory to the
/// other. The extractor is single-threaded, so its whole footprint is on the worker thread
/// that calls it.
struct Counting;

thread_local! {
    // `const` initialisers without destructors: safe to touch from inside the allocator,
    // they neither allocate nor ever become inaccessible during thread teardown.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

fn size_of_layout(layout: Layout) -> isize {
    isize::try_from(layout.size()).unwrap_or(isize::MAX)
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(size_of_layout(layout));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(size_of_layout(layout));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        count(-size_of_layout(layout));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Counted as "new block, then old block freed": a moving realloc holds both
            // for a moment, so the peak must see both.
            count(isize::try_from(new_size).unwrap_or(isize::MAX));
            count(-size_of_layout(layout));
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn reset_peak() {
    LIVE.with(|live| live.set(0));
    PEAK.with(|peak| peak.set(0));
}

fn peak_bytes() -> usize {
    PEAK.with(|peak| usize::try_from(peak.get()).unwrap_or(0))
}

/// The most one message (or file) may make the extractor hold at once.
///
/// The only large allowance `Limits` grants a message regardless of its size is the zip
/// budget, `max_zip_total_size` (50 MiB by default: bytes unpacked from all its archives).
/// Everything else the extractor makes is a copy of the input in some form: mail-parser's
/// decoded bodies (a UTF-16 or 8-bit charset can grow up to 3x as UTF-8), the HTML-to-text
/// copy, lossy UTF-8 copies for the PEM scanner, base64 decodes, the re-read raw body of
/// text parts, and the problem strings. A handful of copies at up to 3x each stays well
/// under 50x the input. The 14 MiB on top of the zip budget is slack for fixed costs
/// (parser tables, thread-local buffers), giving the round 64 MiB + 50x. The corpora's
/// messages are at most 20 KiB, so this is a bound against blow-ups (quadratic copies,
/// runaway loops that allocate), not a performance target.
fn memory_bound(input_len: usize) -> usize {
    let zip_budget = usize::try_from(Limits::default().max_zip_total_size).unwrap_or(usize::MAX);
    zip_budget + 14 * 1024 * 1024 + 50 * input_len
}

// ---------------------------------------------------------------------------------------
// Time: a hang guard

/// A file taking longer than this is a hang (a loop that does not end), not slowness: the
/// largest corpus file takes milliseconds even in a debug build on a busy 2-core machine.
const HANG_LIMIT: Duration = Duration::from_secs(20);

/// What a guarded run measured.
struct Measured<T> {
    value: T,
    elapsed: Duration,
    peak: usize,
}

/// Runs `job` on a worker thread, failing the test if it panics or runs past
/// [`HANG_LIMIT`], and measures its time and peak memory. A hung worker is left behind
/// (a thread cannot be killed); the test fails at once and the process ends after it.
fn guarded<T: Send + 'static>(what: &str, job: impl FnOnce() -> T + Send + 'static) -> Measured<T> {
    let (sender, receiver) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(format!("corpus: {what}"))
        .spawn(move || {
            reset_peak();
            let start = Instant::now();
            let value = job();
            let elapsed = start.elapsed();
            // The peak includes the result, which the caller keeps alive too.
            let peak = peak_bytes();
            // The receiver only goes away if the test already failed.
            let _ = sender.send(Measured {
                value,
                elapsed,
                peak,
            });
        })
        .expect("spawn a worker thread");
    match receiver.recv_timeout(HANG_LIMIT) {
        Ok(measured) => {
            worker.join().expect("worker ends after sending");
            measured
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!(
            "{what}: still running after {} s: the extractor hangs on this input",
            HANG_LIMIT.as_secs()
        ),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let payload = worker
                .join()
                .expect_err("a worker that sent nothing has panicked");
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic payload)");
            panic!("{what}: the extractor panicked: {message}");
        }
    }
}

/// Running totals for the summary printed at the end of each test.
#[derive(Default)]
struct Figures {
    runs: usize,
    peak: usize,
    peak_file: String,
    slowest: Duration,
    slowest_file: String,
}

impl Figures {
    /// Checks the memory bound for one run and keeps the maxima.
    fn record<T>(&mut self, what: &str, input_len: usize, run: &Measured<T>) {
        let bound = memory_bound(input_len);
        assert!(
            run.peak <= bound,
            "{what}: peak {} bytes live while extracting a {input_len}-byte input, over the bound of {bound}",
            run.peak
        );
        self.runs += 1;
        if run.peak >= self.peak {
            self.peak = run.peak;
            self.peak_file = what.to_string();
        }
        if run.elapsed >= self.slowest {
            self.slowest = run.elapsed;
            self.slowest_file = what.to_string();
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} guarded runs; peak live memory {} KiB ({}); slowest {:.1} ms ({})",
            self.runs,
            self.peak.div_ceil(1024),
            self.peak_file,
            self.slowest.as_secs_f64() * 1000.0,
            self.slowest_file
        )
    }
}

// ---------------------------------------------------------------------------------------
// Finding the corpora

/// Where the corpora are, inside the repository.
fn corpora_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/third-party")
}

/// The corpus folder `name`. Panics if it is missing: a test that has no input has not
/// passed.
fn corpus(name: &str) -> PathBuf {
    let dir = corpora_root().join(name);
    assert!(
        dir.is_dir(),
        "corpus {} not found: the third-party corpora are part of the repository \
         (tests/data/third-party); restore them from git",
        dir.display()
    );
    dir
}

/// Each corpus folder, and how many data files each of its subfolders holds (`""` for the
/// folder itself), as copied from upstream (see tests/data/third-party/README.md).
const CORPORA: &[(&str, &[(&str, usize)])] = &[
    (
        "mail-parser",
        &[("malformed", 23), ("rfc", 10), ("thirdparty", 20)],
    ),
    (
        "x509-parser",
        &[("", 25), ("crl-ext", 3), ("crl-idp", 6), ("rsa-pss", 3)],
    ),
];

/// The corpora check of its own: every corpus is there, with its licence and README, and
/// holds exactly the files it was copied with. The other tests then cannot pass by reading
/// an empty or half-copied folder.
#[test]
fn corpora_are_present() {
    let root = corpora_root();
    assert!(
        root.join("README.md").is_file(),
        "{} has no README.md saying where the corpora come from",
        root.display()
    );
    for &(name, folders) in CORPORA {
        let dir = corpus(name);
        for required in ["README.md", "LICENSE-MIT", "LICENSE-APACHE"] {
            let path = dir.join(required);
            assert!(
                path.metadata().is_ok_and(|m| m.is_file() && m.len() > 0),
                "{}: missing or empty (the corpus is redistributed under its licence)",
                path.display()
            );
        }
        let files = corpus_files(&dir);
        for &(folder, expected) in folders {
            let found: Vec<&String> = files
                .iter()
                .filter(|f| match f.rsplit_once('/') {
                    Some((parent, _)) => parent == folder,
                    None => folder.is_empty(),
                })
                .collect();
            assert_eq!(
                found.len(),
                expected,
                "{name}/{folder}: expected {expected} data files, found {found:?}"
            );
            for file in found {
                let len = std::fs::metadata(dir.join(file))
                    .unwrap_or_else(|e| panic!("{name}/{file}: {e}"))
                    .len();
                assert!(len > 0, "{name}/{file} is empty");
            }
        }
        let total: usize = folders.iter().map(|(_, n)| n).sum();
        assert_eq!(
            files.len(),
            total,
            "{name}: files outside the expected folders: {files:?}"
        );
    }
}

/// Every data file under `dir`, subfolders included, as sorted '/'-separated relative
/// names. Licenses and READMEs are not test input.
fn corpus_files(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", folder.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("corpus file names are UTF-8");
            if name.starts_with("LICENSE") || name.starts_with("README") {
                continue;
            }
            let relative = path
                .strip_prefix(dir)
                .expect("under the corpus folder")
                .components()
                .map(|c| c.as_os_str().to_str().expect("UTF-8 path"))
                .collect::<Vec<_>>()
                .join("/");
            files.push(relative);
        }
    }
    files.sort();
    files
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
}

/// Every problem must say where and what: an empty reason is no reason.
fn assert_problems_named(what: &str, extraction: &Extraction) {
    for problem in &extraction.problems {
        assert!(
            !problem.what.trim().is_empty() && !problem.found_in.trim().is_empty(),
            "{what}: a problem without place or reason: {problem:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// mail-parser: malformed and odd MIME

/// Base64 as mailers write it: padding sometimes lost.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Whether `bytes` hold a DER X.509 certificate at any offset.
fn der_certificate_inside(bytes: &[u8]) -> bool {
    (0..bytes.len())
        .any(|at| bytes[at] == 0x30 && x509_parser::parse_x509_certificate(&bytes[at..]).is_ok())
}

/// Whether a raw message holds certificate bytes anywhere: a PEM marker, DER in the raw
/// bytes, or either inside a run of base64 lines (a transfer-encoded body). Checked
/// independently of the extractor (x509-parser directly, and our own base64 reading), so
/// that "no certificate found" is asserted only where there truly is none.
fn holds_certificate_bytes(raw: &[u8]) -> bool {
    let has_marker = |bytes: &[u8]| bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if has_marker(raw) || der_certificate_inside(raw) {
        return true;
    }
    let mut run = Vec::new();
    let mut runs = Vec::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        // A run starts at a line long enough not to be a word, and takes the short last
        // line of the body too.
        if (line.len() >= 16 || (!run.is_empty() && !line.is_empty()))
            && line
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        {
            run.extend_from_slice(line);
        } else if !run.is_empty() {
            runs.push(std::mem::take(&mut run));
        }
    }
    runs.push(run);
    runs.iter()
        .filter_map(|run| LENIENT.decode(run).ok())
        .any(|decoded| has_marker(&decoded) || der_certificate_inside(&decoded))
}

type ExtractFn = fn(&[u8], &str, &Limits) -> Result<Extraction, ExtractError>;

/// Runs one extractor entry point on one input under the hang guard and memory bound.
fn extract_guarded(
    what: &str,
    bytes: &[u8],
    name: &str,
    entry: ExtractFn,
    figures: &mut Figures,
) -> Result<Extraction, ExtractError> {
    let input = bytes.to_vec();
    let name = name.to_string();
    let run = guarded(what, move || entry(&input, &name, &Limits::default()));
    figures.record(what, bytes.len(), &run);
    run.value
}

#[test]
fn mail_parser_corpus_is_read_without_panic_hang_or_certificates() {
    let dir = corpus("mail-parser");
    let files = corpus_files(&dir);
    assert_eq!(
        files.len(),
        53,
        "expected the 53 messages of mail-parser's malformed, rfc and thirdparty folders: {files:?}"
    );
    let entries: [(&str, ExtractFn); 2] = [
        ("extract", |bytes, _, limits| {
            extract::extract(bytes, limits)
        }),
        ("extract_any", extract::extract_any),
    ];
    let mut figures = Figures::default();
    let (mut read_ok, mut problems) = (0, 0);
    // (entry point, file) of every outright refusal, compared with MAIL_REFUSED below.
    let mut refused: Vec<(&str, &str)> = Vec::new();
    for file in &files {
        let raw = read(&dir, file);
        // The README says none holds a certificate; an update of the corpus that adds one
        // must make this test be revisited, not quietly weaken it.
        assert!(
            !holds_certificate_bytes(&raw),
            "{file}: the mail-parser corpus now holds certificate bytes; the `certificates.is_empty()` \
             assertion below no longer applies to it"
        );
        for (entry_name, entry) in entries {
            let what = format!("mail-parser/{file} ({entry_name})");
            match extract_guarded(&what, &raw, file, entry, &mut figures) {
                Ok(extraction) => {
                    assert!(
                        extraction.certificates.is_empty(),
                        "{what}: certificates reported from a message that holds none: {:?}",
                        extraction.certificates
                    );
                    assert!(
                        extraction.signing_requests.is_empty()
                            && extraction.private_keys.is_empty(),
                        "{what}: a CSR or key reported from a message that holds none: {extraction:?}"
                    );
                    assert_problems_named(&what, &extraction);
                    if entry_name == "extract" {
                        read_ok += 1;
                        problems += extraction.problems.len();
                    }
                }
                Err(error) => {
                    assert!(
                        !error.to_string().trim().is_empty(),
                        "{what}: refused without a reason ({error:?})"
                    );
                    // Only the size limit and "not a message" refuse outright; the RFC
                    // and real-world folders hold proper messages, which must be read.
                    assert!(
                        file.starts_with("malformed/"),
                        "{what}: a well-formed message was refused: {error}"
                    );
                    refused.push((entry_name, file.as_str()));
                }
            }
        }
    }
    eprintln!(
        "mail-parser corpus: {} messages, {read_ok} read by extract ({problems} problems reported), \
         refused: {refused:?}; {}",
        files.len(),
        figures.summary()
    );
    // Per file, not a total: which messages each entry point refuses outright is known, so
    // a message that starts (or stops) being refused fails here by name.
    let expected: Vec<(&str, &str)> = MAIL_REFUSED.to_vec();
    assert_eq!(
        refused, expected,
        "mail-parser messages refused outright, as (entry point, file), differ from MAIL_REFUSED"
    );
}

/// The (entry point, file) pairs of the mail-parser corpus that are refused outright with an
/// error, in the order the test meets them; every other message must be read. Only the size
/// limit and "not a message" refuse a whole input: every message here is far under the size
/// limit and is a message (headers, then a body), malformed ones included, so none is.
const MAIL_REFUSED: &[(&str, &str)] = &[];

/// The guard above must not be vacuous: a certificate from the x509 corpus, base64-encoded
/// as a mail attachment or pasted as PEM, is seen by it (and by the extractor).
#[test]
fn the_certificate_bytes_check_sees_certificates() {
    let dir = corpus("x509-parser");
    let der = read(&dir, "certificate.der");
    let encoded = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|chunk| std::str::from_utf8(chunk).expect("base64 is ASCII"))
        .collect();
    let attachment = format!(
        "From: ca@example.com\r\nSubject: cert\r\nMIME-Version: 1.0\r\n\
         Content-Type: application/pkix-cert; name=\"c.cer\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        lines.join("\r\n")
    );
    assert!(!holds_certificate_bytes(
        b"From: a@b\r\n\r\nno certificate here\r\n"
    ));
    assert!(holds_certificate_bytes(&der));
    assert!(holds_certificate_bytes(attachment.as_bytes()));
    assert!(holds_certificate_bytes(&read(&dir, "certificate.pem")));
    let found =
        extract::extract(attachment.as_bytes(), &Limits::default()).expect("a well-formed message");
    assert_eq!(found.certificates.len(), 1, "{found:?}");
}

// ---------------------------------------------------------------------------------------
// x509-parser: certificates, CSRs and CRLs

/// What a certificate is to `validate`, judged from openssl's view of it: a root is
/// self-signed and a CA (or v1, which has no extensions to say so) and is dropped from
/// chains; an intermediate is a CA issued by someone else and only serves chains; the rest
/// are leaves, judged by the four rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Leaf,
    Root,
    Intermediate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// SHA-256 of `openssl x509 -outform der` of the file, and its role.
    Certificate(&'static str, Role),
    SigningRequest,
    Crl,
    /// Not a certificate, CSR or CRL.
    #[allow(dead_code)] // kept for files openssl reads as none of the above
    Other,
}

use Kind::{Certificate, Crl, SigningRequest};
use Role::{Intermediate, Leaf, Root};

/// Every file of the x509-parser corpus, classified with openssl (1/3.x), not by fulfill:
///
/// - kind: the first of `openssl x509`, `openssl req`, `openssl crl` (`-inform der`, then
///   `pem`) that reads the file;
/// - SHA-256: `openssl x509 -inform … -outform der | sha256sum`;
/// - role: basicConstraints from `openssl x509 -ext basicConstraints`, version from
///   `-text`, and self-signed = subject equals issuer and the signature verifies with the
///   certificate's own key (`openssl verify -check_ss_sig` and pyca/cryptography's
///   `verify_directly_issued_by`).
///
/// Notes: the `crl-ext/` files are certificates with CRL extensions, not CRLs.
/// `duplicate_value_in_authority_info_access.der` has two trailing zero bytes after the
/// certificate; the SHA-256 is of the certificate alone. `no_end.pem` has no END line, which
/// openssl refuses; its body (`grep -v ----- | base64 -d | openssl x509 -inform der`) is
/// the same certificate as `no_extensions.der`.
const X509_TABLE: &[(&str, Kind)] = &[
    (
        "IGC_A.der",
        Certificate(
            "b9bea7860a962ea3611dab97ab6da3e21c1068b97d55575ed0e11279c11c8932",
            Root,
        ),
    ),
    (
        "IGC_A.pem",
        Certificate(
            "b9bea7860a962ea3611dab97ab6da3e21c1068b97d55575ed0e11279c11c8932",
            Root,
        ),
    ),
    // Self-signed v3 without basicConstraints: cannot sign, so a leaf.
    (
        "ca_minimalcrl.der",
        Certificate(
            "e62b689fd79c7e1208fa910df96839ca458671e0aae92573abb37f43d90dc5c7",
            Leaf,
        ),
    ),
    (
        "certificate.der",
        Certificate(
            "8fa4cb4e938b5a855fb1497fa288ac55723e0109d0518b505481348dec0de471",
            Leaf,
        ),
    ),
    (
        "certificate.pem",
        Certificate(
            "8fa4cb4e938b5a855fb1497fa288ac55723e0109d0518b505481348dec0de471",
            Leaf,
        ),
    ),
    (
        "crl-ext/crl-complex.der",
        Certificate(
            "64acfbe4da92d28b6f1f498b21d2f9364529b73743c916c75fbf5eb1b14b6217",
            Leaf,
        ),
    ),
    (
        "crl-ext/crl-no-crl.der",
        Certificate(
            "54f9d02e1d4b148cdbc0c09166d9d9648fd8a7078a734a52b490829775f6afb0",
            Leaf,
        ),
    ),
    (
        "crl-ext/crl-simple.der",
        Certificate(
            "27250bbac66b8120931e1eca3db17a041f5e57a2fa9d4505fb7e14cb36b8dc21",
            Leaf,
        ),
    ),
    ("crl-idp/indirect.der", Crl),
    ("crl-idp/minimal.der", Crl),
    ("crl-idp/only_attribute_certs.der", Crl),
    ("crl-idp/only_ca_certs.der", Crl),
    ("crl-idp/only_some_reasons.der", Crl),
    ("crl-idp/only_user_certs.der", Crl),
    ("csr-challenge-password.pem", SigningRequest),
    ("csr-custom-extension.pem", SigningRequest),
    // DER, though `.csr` files are usually PEM: openssl reads it with `req -inform der`.
    ("csr-empty-attributes.csr", SigningRequest),
    (
        "duplicate_value_in_authority_info_access.der",
        Certificate(
            "d5ae90e264b34499fc61212906f738eb64d2870b8e13d5383cac136dffa418f2",
            Leaf,
        ),
    ),
    // v1, self-signed: a root.
    (
        "ed25519.der",
        Certificate(
            "d38693b676f3b80b183e7ab61d14182a9d207c131a35ed67696cf8955972551d",
            Root,
        ),
    ),
    ("empty.crl", Crl),
    ("example.crl", Crl),
    (
        "extension1.der",
        Certificate(
            "3b9ee8d9070277fdddf85e92d99651ccc4a1736c2079ba492797e34c3cf3b47f",
            Root,
        ),
    ),
    (
        "extension2.der",
        Certificate(
            "b62badf95878a9961e26bbcd306711c87f8edbd9c3913070ce328dd90c94fec6",
            Leaf,
        ),
    ),
    (
        "lets-encrypt-x3-cross-signed.der",
        Certificate(
            "25847d668eb4f04fdd40b12b6b0740c567da7d024308eb6c2c96fe41d9de218d",
            Intermediate,
        ),
    ),
    ("minimal.crl", Crl),
    (
        "no_end.pem",
        Certificate(
            "39f41ff9385a90df31a90fc6c0c686cf2343dea2f18cd058339a0d00a07a51cb",
            Leaf,
        ),
    ),
    (
        "no_extensions.der",
        Certificate(
            "39f41ff9385a90df31a90fc6c0c686cf2343dea2f18cd058339a0d00a07a51cb",
            Leaf,
        ),
    ),
    (
        "no_extensions.pem",
        Certificate(
            "39f41ff9385a90df31a90fc6c0c686cf2343dea2f18cd058339a0d00a07a51cb",
            Leaf,
        ),
    ),
    // ecdsa-with-SHA512 over P-521, CA:TRUE, self-signed.
    (
        "p521-selfsigned.der",
        Certificate(
            "f0bf00ce9a49c82cc8c3b471d9ff0bb31b1401cd29af94f60b66fb582a18e411",
            Root,
        ),
    ),
    (
        "rsa-pss/self_signed_sha256.der",
        Certificate(
            "e9603a0b1b5a5a50b6b21879404020150f963487f27059985c6c937f542a4e7d",
            Root,
        ),
    ),
    (
        "rsa-pss/self_signed_sha384.der",
        Certificate(
            "ee6a559da3fd08a9be335a832ac2abc7f7e65e5b541c5b5397e18dc663e1eb6a",
            Root,
        ),
    ),
    (
        "rsa-pss/self_signed_sha512.der",
        Certificate(
            "2c6abf4d651135d3fb3d1e1758f8795d84ac6653b643bf316fcb0fff2c16f182",
            Root,
        ),
    ),
    ("test.csr", SigningRequest),
    (
        "unique_ids.der",
        Certificate(
            "bf62692e0dc573d3f6c7251a5322118126af3f434059181d47475dfdc0a6d400",
            Leaf,
        ),
    ),
    (
        "unsupported_critical_ext.der",
        Certificate(
            "d5f30320f11ff1be2c59fff285e5e6cbf76aee617849851313db29d74d2111cf",
            Root,
        ),
    ),
    (
        "unsupported_noncritical_ext.der",
        Certificate(
            "39eeab55412289750302fe59248456abed8d33ae574624b1734c98d411b05dab",
            Root,
        ),
    ),
    (
        "v1.der",
        Certificate(
            "3d6da682d33093d85aa632846ba9fabf31fe90edc091a27fd7f62e514f858c57",
            Root,
        ),
    ),
];

/// A fixed `now`, so validity verdicts do not drift with the calendar.
const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

/// How `validate` (no trust anchors, no keys) dealt with one read certificate.
fn role_in_report(sha256: &str, der: &[u8], report: &validate::Report, what: &str) -> Role {
    let leaf = report.verdicts.iter().find_map(|verdict| match verdict {
        Verdict::Rejected(rejected) if rejected.leaf.sha256 == sha256 => Some(rejected),
        Verdict::Rejected(_) => None,
        Verdict::Accepted(accepted) => {
            panic!("{what}: accepted with no keys and no trust anchors: {accepted:?}")
        }
    });
    let root = report
        .dropped_roots
        .iter()
        .any(|root| root.sha256 == sha256);
    match (leaf, root) {
        (Some(rejected), false) => {
            assert!(
                !rejected.reasons.is_empty(),
                "{what}: rejected without a reason"
            );
            Leaf
        }
        (None, true) => Root,
        (None, false) => {
            // validate says nothing of a CA that is not self-signed: it only serves as an
            // intermediate for other certificates' chains.
            let info = CertificateInfo::parse(der)
                .unwrap_or_else(|e| panic!("{what}: validate read it, CertificateInfo not: {e}"));
            assert!(
                info.is_ca && report.verdicts.is_empty() && report.dropped_roots.is_empty(),
                "{what}: neither judged, dropped nor a CA: {report:?}"
            );
            Intermediate
        }
        (Some(_), true) => panic!("{what}: both judged as a leaf and dropped as a root"),
    }
}

#[test]
fn x509_parser_corpus_is_classified_as_openssl_reads_it() {
    let dir = corpus("x509-parser");
    let files = corpus_files(&dir);

    // The table must cover the corpus exactly: a new file fails until someone classifies it.
    let unclassified: Vec<&String> = files
        .iter()
        .filter(|f| !X509_TABLE.iter().any(|(name, _)| name == f))
        .collect();
    assert!(
        unclassified.is_empty(),
        "x509-parser files not in X509_TABLE: {unclassified:?}; classify each with openssl \
         (x509/req/crl, -inform der or pem) and add it"
    );
    let stale: Vec<&str> = X509_TABLE
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !files.iter().any(|f| f == name))
        .collect();
    assert!(
        stale.is_empty(),
        "X509_TABLE names files the corpus no longer has: {stale:?}"
    );

    let mut figures = Figures::default();
    let mut certs_read = 0;
    // Certificates the extractor refused (with a reason) and ones validate could not read,
    // compared with X509_REFUSED and X509_UNREADABLE below.
    let (mut certs_refused, mut unreadable): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let mut roles_seen = Vec::new();
    for &(file, kind) in X509_TABLE {
        let bytes = read(&dir, file);
        let what = format!("x509-parser/{file}");
        let found = extract_guarded(
            &format!("{what} (extract_file)"),
            &bytes,
            file,
            extract::extract_file,
            &mut figures,
        )
        .unwrap_or_else(|e| panic!("{what}: a small file was refused outright: {e}"));
        assert_problems_named(&what, &found);
        // `fulfill import` hands saved attachments to extract_any; these files (PEM or
        // DER) must be read as files, exactly like extract_file reads them.
        let any = extract_guarded(
            &format!("{what} (extract_any)"),
            &bytes,
            file,
            extract::extract_any,
            &mut figures,
        );
        assert_eq!(
            any.as_ref(),
            Ok(&found),
            "{what}: extract_any reads it differently from extract_file"
        );
        assert!(
            found.private_keys.is_empty(),
            "{what}: a private key reported from a file that holds none"
        );

        match kind {
            Certificate(sha256, role) => {
                assert!(
                    found.signing_requests.is_empty(),
                    "{what}: a certificate taken for a CSR"
                );
                match found.certificates.as_slice() {
                    [] => {
                        // Refused: acceptable only with a reason that says why.
                        assert!(
                            !found.problems.is_empty(),
                            "{what}: a certificate neither read nor refused with a reason"
                        );
                        certs_refused.push(file);
                        eprintln!("{what}: refused: {:?}", found.problems);
                        continue;
                    }
                    [cert] => assert_eq!(
                        cert.sha256, sha256,
                        "{what}: read a different certificate than openssl ({})",
                        cert.found_in
                    ),
                    many => panic!(
                        "{what}: one certificate expected, {} read: {many:?}",
                        many.len()
                    ),
                }
                certs_read += 1;

                // Then the validator, with no trust anchors and no keys: it must judge
                // the certificate or say it cannot read it, never panic.
                let certificates = found.certificates.clone();
                let run = guarded(&format!("{what} (validate)"), move || {
                    validate::validate(&certificates, &Expectations::default(), &[], NOW)
                });
                figures.record(&format!("{what} (validate)"), bytes.len(), &run);
                let report = run.value;
                if let Some((place, reason)) = report.unreadable.first() {
                    assert!(
                        !reason.trim().is_empty() && !place.trim().is_empty(),
                        "{what}: unreadable without a reason"
                    );
                    unreadable.push(file);
                    eprintln!("{what}: validate cannot read it: {reason}");
                    continue;
                }
                let seen = role_in_report(sha256, &found.certificates[0].der, &report, &what);
                roles_seen.push((file, role, seen));
            }
            SigningRequest => {
                assert!(
                    found.certificates.is_empty(),
                    "{what}: a CSR taken for a certificate: {:?}",
                    found.certificates
                );
                // Recognised as a CSR whether PEM-labelled or bare DER, so the pipeline can
                // say "this is your CSR, not the certificate" rather than "nothing found".
                assert_eq!(
                    found.signing_requests.len(),
                    1,
                    "{what}: the CSR was not recognised as one: {found:?}"
                );
            }
            Crl => {
                assert!(
                    found.certificates.is_empty(),
                    "{what}: a CRL taken for a certificate: {:?}",
                    found.certificates
                );
                assert!(
                    found.signing_requests.is_empty(),
                    "{what}: a CRL taken for a CSR"
                );
                // Reported, so a person sees why the file gave no certificate.
                assert!(
                    !found.problems.is_empty(),
                    "{what}: a CRL passed over without a word"
                );
            }
            Kind::Other => {
                assert!(
                    found.certificates.is_empty(),
                    "{what}: certificates read from a file openssl reads as none"
                );
            }
        }
    }

    // All mismatches at once: one run shows the whole picture.
    let wrong: Vec<String> = roles_seen
        .iter()
        .filter(|(_, expected, seen)| expected != seen)
        .map(|(file, expected, seen)| {
            format!("{file}: expected {expected:?}, validate saw {seen:?}")
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "validate misjudged certificates:\n{}",
        wrong.join("\n")
    );

    let certificates = X509_TABLE
        .iter()
        .filter(|(_, kind)| matches!(kind, Certificate(..)))
        .count();
    eprintln!(
        "x509-parser corpus: {} files; certificates: {certs_read} read, refused: {certs_refused:?}, \
         unreadable to validate: {unreadable:?}; CSRs and CRLs: {} ; {}",
        files.len(),
        files.len() - certificates,
        figures.summary()
    );
    // A refusal with a reason, or a certificate validate cannot read, is acceptable only
    // where it is expected: otherwise every certificate of the corpus could be refused and
    // the test would still pass.
    assert_eq!(
        certs_refused, X509_REFUSED,
        "certificates the extractor refused differ from X509_REFUSED"
    );
    assert_eq!(
        unreadable, X509_UNREADABLE,
        "certificates validate could not read differ from X509_UNREADABLE"
    );
}

/// Certificates of [`X509_TABLE`] the extractor may refuse (no certificate, a problem saying
/// why), in table order. None: each is a well-formed X.509 certificate openssl reads, in
/// PEM or DER, so the extractor must read it (rsa-pss, Ed25519, P-521 and unsupported
/// extensions included; whether it is acceptable is validate's call, not the reader's).
const X509_REFUSED: &[&str] = &[];

/// Certificates the extractor reads but `validate` reports as unreadable, in table order.
/// None: validate parses with x509-parser, which reads every one of its own test files.
const X509_UNREADABLE: &[&str] = &[];
