//! A key or CSR file from `[keys] dirs`: PKCS#8 (plain and encrypted), PKCS#1, SEC1, CSRs,
//! PEM with any blocks, or bare DER.
#![no_main]

use fulfill::keys::read_key_material;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // Errors are fine; a panic, a hang or a runaway allocation is the finding.
    let _ = read_key_material(bytes);
});
