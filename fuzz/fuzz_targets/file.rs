//! A bare attachment or downloaded file: the PEM scanner, the DER/PKCS#7 classifier and
//! the zip reader, chosen by content as `fulfill import` chooses them.
#![no_main]

use fulfill::extract::{Limits, extract_file};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|bytes: &[u8]| {
    let limits = Limits::default();
    if let Ok(extraction) = extract_file(bytes, "fuzz-input", &limits) {
        common::check_invariants(&extraction, &limits);
        common::validate(&extraction);
    }
});
