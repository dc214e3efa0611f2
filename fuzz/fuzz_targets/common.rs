//! What every extraction must satisfy whatever the input, and a pass through the validator
//! so that certificate parsing is fuzzed on whatever the extractor lets through.

use fulfill::extract::{Extraction, Limits, sha256_hex};
use fulfill::validate::{Expectations, validate as judge};
use std::collections::HashSet;
use std::sync::OnceLock;

pub fn check_invariants(extraction: &Extraction, limits: &Limits) {
    assert!(
        extraction.certificates.len() <= limits.max_certificates,
        "more certificates kept than max_certificates"
    );
    let mut seen = HashSet::new();
    for cert in &extraction.certificates {
        assert_eq!(
            cert.sha256,
            sha256_hex(&cert.der),
            "fingerprint is not of the DER"
        );
        assert!(
            seen.insert(&cert.sha256),
            "the same certificate was kept twice"
        );
    }
}

pub fn validate(extraction: &Extraction) {
    // The samples' root, so that chains built from the seed corpus reach an anchor and the
    // path-building code is exercised too, not only parsing.
    static ANCHORS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let anchors = ANCHORS.get_or_init(|| pem_bodies(include_str!("../../samples/ca/root.pem")));
    let expectations = Expectations {
        name: Some("www.alpha.example.com".into()),
        keys: Vec::new(),
    };
    let now = time::macros::datetime!(2026-06-01 0:00 UTC);
    let _ = judge(&extraction.certificates, &expectations, anchors, now);
}

fn pem_bodies(text: &str) -> Vec<Vec<u8>> {
    fulfill::extract::scan_pem(text, usize::MAX)
        .blocks
        .into_iter()
        .filter_map(|block| block.der.ok())
        .collect()
}
