//! A raw message as it arrives from IMAP, from anyone: MIME, HTML, quoted-printable,
//! forwards, PEM, DER, PKCS#7 and zip attachments, then rules 1-4 on what was found.
#![no_main]

use fulfill::extract::{Limits, extract};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|message: &[u8]| {
    let limits = Limits::default();
    if let Ok(extraction) = extract(message, &limits) {
        common::check_invariants(&extraction, &limits);
        common::validate(&extraction);
    }
});
