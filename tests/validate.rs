//! `validate::validate`: every rule of docs/architecture.md ("The four rules"), each rejection naming its rule
//! and the certificate, with an explicit `now` and test anchors (never the system store).

use fulfill_test_pki as pki;

use fulfill::extract::{FoundCertificate, sha256_hex};
use fulfill::keys::{self, KeyMaterial, PublicKeyId};
use fulfill::validate::{
    self, Accepted, CertificateInfo, Expectations, KeySource, KnownKey, Rejected, Report, Rule,
    Verdict, covers,
};
use pki::{Ca, Leaf, LeafSpec, now, ymd};

// ---------------------------------------------------------------------------------------
// Helpers

struct Pki {
    root: Ca,
    ca: Ca,
    leaf: Leaf,
}

/// Root → intermediate → leaf for www.example.com and example.com, valid in 2026.
fn pki() -> Pki {
    let root = pki::root("Test Root CA");
    let ca = pki::intermediate("Test DV CA", &root);
    let leaf = pki::leaf(&LeafSpec::new(&["www.example.com", "example.com"]), &ca);
    Pki { root, ca, leaf }
}

fn found(ders: &[&[u8]]) -> Vec<FoundCertificate> {
    ders.iter()
        .enumerate()
        .map(|(i, der)| FoundCertificate {
            der: der.to_vec(),
            sha256: sha256_hex(der),
            found_in: format!("test block {}", i + 1),
        })
        .collect()
}

/// The key of a private key file, as the pipeline reads it.
fn key_file(leaf: &Leaf) -> KnownKey {
    match keys::read_key_material(leaf.key_pem().as_bytes())
        .expect("key")
        .as_slice()
    {
        [KeyMaterial::PrivateKey(key)] => KnownKey {
            key: key.clone(),
            source: KeySource::KeyFile("/etc/ssl/private/www.key".into()),
            requested_name: None,
            private_key_file: Some("/etc/ssl/private/www.key".into()),
            csr_file: None,
            order_id: None,
        },
        other => panic!("unexpected {other:?}"),
    }
}

/// The key and name of a CSR, as the pipeline reads it.
fn csr_key(leaf: &Leaf, common_name: &str) -> KnownKey {
    let csr = pki::csr_pem(&leaf.key, Some(common_name), &[common_name]);
    match keys::read_key_material(csr.as_bytes())
        .expect("csr")
        .as_slice()
    {
        [KeyMaterial::SigningRequest { key, name }] => KnownKey {
            key: key.clone(),
            source: KeySource::OrderCsr(1234),
            requested_name: name.clone(),
            private_key_file: None,
            csr_file: None,
            order_id: None,
        },
        other => panic!("unexpected {other:?}"),
    }
}

fn expect(name: Option<&str>, keys: Vec<KnownKey>) -> Expectations {
    Expectations {
        name: name.map(str::to_string),
        keys,
    }
}

fn only_verdict(report: &Report) -> &Verdict {
    assert_eq!(report.verdicts.len(), 1, "{report:#?}");
    &report.verdicts[0]
}

fn accepted(report: &Report) -> &Accepted {
    match only_verdict(report) {
        Verdict::Accepted(a) => a,
        Verdict::Rejected(r) => panic!("rejected: {:#?}", r.reasons),
    }
}

fn rejected(report: &Report) -> &Rejected {
    match only_verdict(report) {
        Verdict::Rejected(r) => r,
        Verdict::Accepted(a) => panic!("accepted: {}", a.leaf.label()),
    }
}

fn rules(rejected: &Rejected) -> Vec<Rule> {
    rejected.reasons.iter().map(|r| r.rule).collect()
}

fn reason(rejected: &Rejected, rule: Rule) -> String {
    rejected
        .reasons
        .iter()
        .find(|r| r.rule == rule)
        .unwrap_or_else(|| panic!("no {rule} reason in {:#?}", rejected.reasons))
        .to_string()
}

fn shas(infos: &[CertificateInfo]) -> Vec<String> {
    infos.iter().map(|i| i.sha256.clone()).collect()
}

// ---------------------------------------------------------------------------------------
// All rules hold

#[test]
fn a_good_mail_is_accepted_with_its_chain() {
    let p = pki();
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(Some("www.example.com"), vec![key_file(&p.leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let a = accepted(&report);
    assert_eq!(a.leaf.sha256, sha256_hex(&p.leaf.der));
    assert_eq!(a.leaf.der, p.leaf.der);
    assert_eq!(
        shas(&a.chain),
        vec![sha256_hex(&p.ca.der)],
        "intermediates only, no root"
    );
    assert_eq!(a.key_source, "key file /etc/ssl/private/www.key");
    assert_eq!(
        a.key.private_key_file.as_deref(),
        Some(std::path::Path::new("/etc/ssl/private/www.key"))
    );
    assert_eq!(a.expected_name, "www.example.com");
    assert_eq!(a.leaf.common_name.as_deref(), Some("www.example.com"));
    assert_eq!(
        a.leaf.dns_names,
        vec!["www.example.com".to_string(), "example.com".to_string()]
    );
    assert!(!a.leaf.is_ca && !a.leaf.self_signed);
    assert!(report.dropped_roots.is_empty() && report.unreadable.is_empty());
    // The other name on the certificate is just as good, in any case.
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(Some("EXAMPLE.com."), vec![key_file(&p.leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    accepted(&report);
}

#[test]
fn validity_bounds_are_inclusive() {
    let p = pki();
    for at in [ymd(2026, 1, 1), ymd(2027, 1, 1)] {
        let report = validate::validate(
            &found(&[&p.leaf.der, &p.ca.der]),
            &expect(Some("www.example.com"), vec![key_file(&p.leaf)]),
            std::slice::from_ref(&p.root.der),
            at,
        );
        accepted(&report);
    }
}

// ---------------------------------------------------------------------------------------
// Rule 1: the key

#[test]
fn rule_1_key_mismatch() {
    let p = pki();
    let stranger = pki::leaf(&LeafSpec::new(&["www.example.com"]), &p.ca);
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(
            Some("www.example.com"),
            vec![key_file(&stranger), csr_key(&stranger, "www.example.com")],
        ),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::KeyMatch], "{:#?}", r.reasons);
    let text = reason(r, Rule::KeyMatch);
    assert!(text.starts_with("rule 1 (key): "), "{text}");
    assert!(
        text.contains("EC P-256") && text.contains("none of the 1 known keys"),
        "{text}"
    );
    // The rejection names the certificate: subject, serial and SHA-256.
    let label = r.leaf.label();
    assert!(label.contains("CN=www.example.com"), "{label}");
    assert!(
        label.contains(&r.leaf.serial) && !r.leaf.serial.is_empty(),
        "{label}"
    );
    assert!(label.contains(&sha256_hex(&p.leaf.der)), "{label}");
}

#[test]
fn rule_1_no_keys_at_all() {
    let p = pki();
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(Some("www.example.com"), vec![]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::KeyMatch]);
    assert!(
        reason(r, Rule::KeyMatch).contains("no private key or CSR"),
        "{:#?}",
        r.reasons
    );
}

#[test]
fn rule_1_an_unusable_leaf_key() {
    let p = pki();
    let ed = pki::leaf(
        &LeafSpec::new(&["www.example.com"]).algorithm(&rcgen::PKCS_ED25519),
        &p.ca,
    );
    let report = validate::validate(
        &found(&[&ed.der, &p.ca.der]),
        &expect(Some("www.example.com"), vec![key_file(&p.leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let r = rejected(&report);
    assert!(
        reason(r, Rule::KeyMatch).contains("cannot be used"),
        "{:#?}",
        r.reasons
    );
}

// ---------------------------------------------------------------------------------------
// Rule 2: the name

#[test]
fn rule_2_wrong_name() {
    let p = pki();
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(Some("shop.example.com"), vec![key_file(&p.leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::Name]);
    let text = reason(r, Rule::Name);
    assert!(text.starts_with("rule 2 (name): "), "{text}");
    assert!(
        text.contains("shop.example.com") && text.contains("www.example.com, example.com"),
        "{text}"
    );
}

#[test]
fn rule_2_no_expected_name_known() {
    let p = pki();
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(None, vec![key_file(&p.leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::Name]);
    assert!(
        reason(r, Rule::Name).contains("--expect-name"),
        "{:#?}",
        r.reasons
    );
}

#[test]
fn rule_2_the_common_name_alone_is_not_enough() {
    // RFC 6125 §6.4.4: with DNS names in subjectAltName, the CN is not looked at; a
    // leaf whose SAN lacks the name is rejected even if its CN has it.
    let p = pki();
    let mut spec = LeafSpec::new(&["other.example.com"]);
    spec.common_name = Some("www.example.com".into());
    let leaf = pki::leaf(&spec, &p.ca);
    let report = validate::validate(
        &found(&[&leaf.der, &p.ca.der]),
        &expect(Some("www.example.com"), vec![key_file(&leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    assert_eq!(rules(rejected(&report)), vec![Rule::Name]);
}

#[test]
fn expected_name_comes_from_the_matching_csr() {
    let p = pki();
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(None, vec![csr_key(&p.leaf, "example.com")]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let a = accepted(&report);
    assert_eq!(a.expected_name, "example.com");
    assert_eq!(a.key_source, "CSR of order 1234");

    // The CSR asked for another name: rule 2, naming it.
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(None, vec![csr_key(&p.leaf, "shop.example.com")]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::Name]);
    assert!(reason(r, Rule::Name).contains("shop.example.com"));

    // An explicit expectation wins over the CSR's name.
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(
            Some("www.example.com"),
            vec![csr_key(&p.leaf, "shop.example.com")],
        ),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    assert_eq!(accepted(&report).expected_name, "www.example.com");

    // The name of a CSR for another key says nothing about this leaf.
    let stranger = pki::leaf(&LeafSpec::new(&["www.example.com"]), &p.ca);
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(None, vec![csr_key(&stranger, "www.example.com")]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    assert_eq!(rules(rejected(&report)), vec![Rule::KeyMatch]);
}

#[test]
fn wildcards_per_rfc_6125() {
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let wildcard = names(&["*.example.com"]);
    assert!(covers(&wildcard, "www.example.com"));
    assert!(covers(&wildcard, "WWW.Example.COM"));
    assert!(covers(&names(&["*.EXAMPLE.com"]), "shop.example.com"));
    assert!(
        covers(&wildcard, "www.example.com."),
        "a trailing dot is the same name"
    );
    assert!(
        !covers(&wildcard, "example.com"),
        "the wildcard needs a label"
    );
    assert!(!covers(&wildcard, "a.b.example.com"), "one label only");
    assert!(!covers(&wildcard, ".example.com"));
    assert!(!covers(&wildcard, "www.example.org"));
    assert!(!covers(&wildcard, "wwwexample.com"));
    assert!(
        !covers(&names(&["*.com"]), "example.com"),
        "no wildcard over a TLD"
    );
    assert!(!covers(&names(&["*"]), "example"));
    assert!(!covers(&names(&["*.*.example.com"]), "a.b.example.com"));
    assert!(
        !covers(&names(&["w*.example.com"]), "www.example.com"),
        "no partial wildcards"
    );
    assert!(!covers(&names(&["www.*.com"]), "www.example.com"));
    // A wildcard order: the expected name is itself "*.example.com".
    assert!(covers(&wildcard, "*.example.com"));
    assert!(!covers(&names(&["www.example.com"]), "*.example.com"));
    // Exact names, any case.
    assert!(covers(
        &names(&["www.example.com", "example.com"]),
        "Example.Com"
    ));
    assert!(!covers(&[], "example.com"));

    // Through validate, with a wildcard certificate.
    let p = pki();
    let leaf = pki::leaf(&LeafSpec::new(&["*.example.com", "example.com"]), &p.ca);
    for (name, ok) in [
        ("www.example.com", true),
        ("example.com", true),
        ("*.example.com", true),
        ("a.b.example.com", false),
    ] {
        let report = validate::validate(
            &found(&[&leaf.der, &p.ca.der]),
            &expect(Some(name), vec![key_file(&leaf)]),
            std::slice::from_ref(&p.root.der),
            now(),
        );
        assert_eq!(report.accepted().count() == 1, ok, "{name}: {report:#?}");
    }
}

// ---------------------------------------------------------------------------------------
// Rule 3: the dates

#[test]
fn rule_3_expired_and_not_yet_valid() {
    let p = pki();
    let check = |at, words: &str| {
        let report = validate::validate(
            &found(&[&p.leaf.der, &p.ca.der]),
            &expect(Some("www.example.com"), vec![key_file(&p.leaf)]),
            std::slice::from_ref(&p.root.der),
            at,
        );
        let r = rejected(&report);
        assert_eq!(rules(r), vec![Rule::Validity], "at {at}: {:#?}", r.reasons);
        let text = reason(r, Rule::Validity);
        assert!(
            text.starts_with("rule 3 (validity): ") && text.contains(words),
            "{text}"
        );
    };
    check(ymd(2027, 1, 2), "expired on 2027-01-01");
    check(ymd(2025, 12, 31), "not valid before 2026-01-01");
}

// ---------------------------------------------------------------------------------------
// Rule 4: the chain

#[test]
fn rule_4_missing_intermediate() {
    let p = pki();
    let report = validate::validate(
        &found(&[&p.leaf.der]),
        &expect(Some("www.example.com"), vec![key_file(&p.leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::Chain]);
    let text = reason(r, Rule::Chain);
    assert!(text.starts_with("rule 4 (chain): "), "{text}");
    assert!(
        text.contains("Test DV CA") && text.contains("missing intermediate"),
        "{text}"
    );
}

#[test]
fn rule_4_untrusted_root() {
    let p = pki();
    let elsewhere = pki::root("Some Other Root");
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(Some("www.example.com"), vec![key_file(&p.leaf)]),
        std::slice::from_ref(&elsewhere.der),
        now(),
    );
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::Chain]);
    let text = reason(r, Rule::Chain);
    assert!(
        text.contains("Test DV CA") && text.contains("Test Root CA"),
        "{text}"
    );
    assert!(text.contains("not a configured trust anchor"), "{text}");

    // No anchors at all is a configuration problem, and says so.
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(Some("www.example.com"), vec![key_file(&p.leaf)]),
        &[],
        now(),
    );
    assert!(reason(rejected(&report), Rule::Chain).contains("trust_roots"));
}

#[test]
fn rule_4_a_root_in_the_mail_is_dropped_and_never_trusted() {
    let p = pki();
    let elsewhere = pki::root("Some Other Root");
    let report = validate::validate(
        &found(&[&p.root.der, &p.leaf.der, &p.ca.der]),
        &expect(Some("www.example.com"), vec![key_file(&p.leaf)]),
        std::slice::from_ref(&elsewhere.der),
        now(),
    );
    assert_eq!(shas(&report.dropped_roots), vec![sha256_hex(&p.root.der)]);
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::Chain]);
    let text = reason(r, Rule::Chain);
    assert!(
        text.contains("sent in the mail") && text.contains("Test Root CA"),
        "{text}"
    );

    // When the same root is a configured anchor, the path verifies, and the root is
    // still left out of the chain to upload.
    let report = validate::validate(
        &found(&[&p.root.der, &p.leaf.der, &p.ca.der]),
        &expect(Some("www.example.com"), vec![key_file(&p.leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let a = accepted(&report);
    assert_eq!(shas(&a.chain), vec![sha256_hex(&p.ca.der)]);
    assert_eq!(shas(&report.dropped_roots), vec![sha256_hex(&p.root.der)]);
    assert!(report.dropped_roots[0].self_signed && report.dropped_roots[0].is_ca);
}

#[test]
fn rule_4_a_forged_root_with_the_anchors_name_does_not_help() {
    // The mail brings its own "Test Root CA" (another key) and an intermediate under it.
    let p = pki();
    let forged_root = pki::root("Test Root CA");
    let forged_ca = pki::intermediate("Test DV CA", &forged_root);
    let leaf = pki::leaf(&LeafSpec::new(&["www.example.com"]), &forged_ca);
    let report = validate::validate(
        &found(&[&leaf.der, &forged_ca.der, &forged_root.der]),
        &expect(Some("www.example.com"), vec![key_file(&leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::Chain], "{:#?}", r.reasons);
    assert!(
        reason(r, Rule::Chain).contains("signature"),
        "{:#?}",
        r.reasons
    );
}

#[test]
fn rule_4_expired_intermediate() {
    let p = pki();
    let old_ca = pki::intermediate_valid("Old DV CA", &p.root, ymd(2021, 1, 1), ymd(2025, 1, 1));
    let leaf = pki::leaf(&LeafSpec::new(&["www.example.com"]), &old_ca);
    let report = validate::validate(
        &found(&[&leaf.der, &old_ca.der]),
        &expect(Some("www.example.com"), vec![key_file(&leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::Chain]);
    let text = reason(r, Rule::Chain);
    assert!(
        text.contains("Old DV CA") && text.contains("2025-01-01"),
        "{text}"
    );
}

#[test]
fn rule_4_not_a_server_certificate() {
    let p = pki();
    let mut spec = LeafSpec::new(&["www.example.com"]);
    spec.server_auth = false;
    let mut params_leaf = pki::leaf(&spec, &p.ca);
    // A client-only certificate: give it clientAuth explicitly.
    let mut client =
        rcgen::CertificateParams::new(vec!["www.example.com".to_string()]).expect("params");
    client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    client.not_before = ymd(2026, 1, 1);
    client.not_after = ymd(2027, 1, 1);
    client.is_ca = rcgen::IsCa::ExplicitNoCa;
    client.serial_number = Some(rcgen::SerialNumber::from(0xc11e_u64));
    params_leaf.der = client
        .signed_by(&params_leaf.key, &p.ca.issuer())
        .expect("sign")
        .der()
        .to_vec();
    let report = validate::validate(
        &found(&[&params_leaf.der, &p.ca.der]),
        &expect(Some("www.example.com"), vec![key_file(&params_leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::Chain]);
    assert!(
        reason(r, Rule::Chain).contains("serverAuth"),
        "{:#?}",
        r.reasons
    );
}

#[test]
fn a_self_signed_leaf_is_judged_not_dropped() {
    let leaf = pki::self_signed_leaf(&LeafSpec::new(&["www.example.com"]));
    let root = pki::root("Test Root CA");
    let report = validate::validate(
        &found(&[&leaf.der]),
        &expect(Some("www.example.com"), vec![key_file(&leaf)]),
        std::slice::from_ref(&root.der),
        now(),
    );
    assert!(report.dropped_roots.is_empty(), "{report:#?}");
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::Chain]);
    assert!(
        reason(r, Rule::Chain).contains("self-signed"),
        "{:#?}",
        r.reasons
    );
}

#[test]
fn every_reason_is_given_at_once() {
    // Wrong key, wrong name, expired, and no intermediate: all four rules, each said.
    let p = pki();
    let stranger = pki::leaf(&LeafSpec::new(&["www.example.com"]), &p.ca);
    let report = validate::validate(
        &found(&[&p.leaf.der]),
        &expect(Some("shop.example.com"), vec![key_file(&stranger)]),
        std::slice::from_ref(&p.root.der),
        ymd(2028, 1, 1),
    );
    let r = rejected(&report);
    assert_eq!(
        rules(r),
        vec![Rule::KeyMatch, Rule::Name, Rule::Validity, Rule::Chain],
        "{:#?}",
        r.reasons
    );
    assert!(
        reason(r, Rule::Chain).contains("missing intermediate"),
        "{:#?}",
        r.reasons
    );

    // An expired leaf whose issuer had already expired before it: both are said, the
    // chain judged at the leaf's last valid day.
    let old_ca = pki::intermediate_valid("Old DV CA", &p.root, ymd(2021, 1, 1), ymd(2025, 6, 1));
    let outliving = pki::leaf(&LeafSpec::new(&["www.example.com"]), &old_ca);
    let report = validate::validate(
        &found(&[&outliving.der, &old_ca.der]),
        &expect(Some("www.example.com"), vec![key_file(&outliving)]),
        std::slice::from_ref(&p.root.der),
        ymd(2028, 1, 1),
    );
    let r = rejected(&report);
    assert_eq!(
        rules(r),
        vec![Rule::Validity, Rule::Chain],
        "{:#?}",
        r.reasons
    );
    assert!(
        reason(r, Rule::Chain).contains("Old DV CA"),
        "{:#?}",
        r.reasons
    );

    // An expired leaf whose chain is fine gets rule 3 alone.
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(Some("www.example.com"), vec![key_file(&p.leaf)]),
        std::slice::from_ref(&p.root.der),
        ymd(2028, 1, 1),
    );
    assert_eq!(rules(rejected(&report)), vec![Rule::Validity]);
}

// ---------------------------------------------------------------------------------------
// Chain building

#[test]
fn chain_order_does_not_depend_on_the_mail() {
    let root = pki::root("Test Root CA");
    let upper = pki::intermediate("Upper CA", &root);
    let lower = pki::intermediate("Lower CA", &upper);
    let leaf = pki::leaf(&LeafSpec::new(&["www.example.com"]), &lower);
    let orders: [[&[u8]; 4]; 4] = [
        [&leaf.der, &lower.der, &upper.der, &root.der],
        [&root.der, &upper.der, &lower.der, &leaf.der],
        [&upper.der, &leaf.der, &root.der, &lower.der],
        [&lower.der, &root.der, &leaf.der, &upper.der],
    ];
    for order in orders {
        let report = validate::validate(
            &found(&order),
            &expect(Some("www.example.com"), vec![key_file(&leaf)]),
            std::slice::from_ref(&root.der),
            now(),
        );
        let a = accepted(&report);
        assert_eq!(
            shas(&a.chain),
            vec![sha256_hex(&lower.der), sha256_hex(&upper.der)],
            "leaf's issuer first, whatever the mail's order"
        );
    }
}

#[test]
fn cross_signed_root() {
    // Sectigo's layout: the leaf under an intermediate under "USERTrust", which is both a
    // self-signed root and cross-signed by the older "AAA Certificate Services".
    let aaa = pki::root("AAA Certificate Services");
    let usertrust = pki::root("USERTrust RSA Certification Authority");
    let cross = usertrust.cross_signed_by(&aaa);
    let sectigo = pki::intermediate("Sectigo RSA Domain Validation Secure Server CA", &usertrust);
    let leaf = pki::leaf(&LeafSpec::new(&["www.example.com"]), &sectigo);
    let mail = found(&[&leaf.der, &sectigo.der, &cross, &usertrust.der, &aaa.der]);
    let expectations = expect(Some("www.example.com"), vec![key_file(&leaf)]);

    // Only the old root is trusted: the path goes through the cross-signed certificate.
    let report = validate::validate(&mail, &expectations, std::slice::from_ref(&aaa.der), now());
    let a = accepted(&report);
    assert_eq!(
        shas(&a.chain),
        vec![sha256_hex(&sectigo.der), sha256_hex(&cross)]
    );
    let mut dropped = shas(&report.dropped_roots);
    dropped.sort();
    let mut roots = vec![sha256_hex(&usertrust.der), sha256_hex(&aaa.der)];
    roots.sort();
    assert_eq!(dropped, roots, "both self-signed roots are left out");

    // The new root is trusted: the cross-signed certificate is not needed.
    for anchors in [
        vec![usertrust.der.clone()],
        vec![usertrust.der.clone(), aaa.der.clone()],
    ] {
        let report = validate::validate(&mail, &expectations, &anchors, now());
        assert_eq!(
            shas(&accepted(&report).chain),
            vec![sha256_hex(&sectigo.der)]
        );
    }

    // Neither: the path ends at a root the mail brought.
    let report = validate::validate(&mail, &expectations, &[pki::root("Elsewhere").der], now());
    assert_eq!(rules(rejected(&report)), vec![Rule::Chain]);
    // The cross-signed certificate is an intermediate, never a root to drop.
    assert!(!shas(&report.dropped_roots).contains(&sha256_hex(&cross)));
}

// ---------------------------------------------------------------------------------------
// Several certificates

#[test]
fn two_leaves_one_accepted_one_rejected() {
    let p = pki();
    let other = pki::leaf(&LeafSpec::new(&["other.example.com"]), &p.ca);
    let report = validate::validate(
        &found(&[&other.der, &p.ca.der, &p.leaf.der]),
        &expect(Some("www.example.com"), vec![key_file(&p.leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    assert_eq!(report.verdicts.len(), 2);
    let accepted: Vec<&Accepted> = report.accepted().collect();
    let rejected: Vec<&Rejected> = report.rejected().collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(rejected.len(), 1);
    assert_eq!(accepted[0].leaf.sha256, sha256_hex(&p.leaf.der));
    assert_eq!(rejected[0].leaf.sha256, sha256_hex(&other.der));
    assert_eq!(rules(rejected[0]), vec![Rule::KeyMatch, Rule::Name]);
    assert!(rejected[0].leaf.label().contains("other.example.com"));
}

#[test]
fn unreadable_certificates_are_reported() {
    let p = pki();
    let mut broken = found(&[&p.leaf.der[..100]]);
    broken.extend(found(&[&p.leaf.der, &p.ca.der]));
    let report = validate::validate(
        &broken,
        &expect(Some("www.example.com"), vec![key_file(&p.leaf)]),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    assert_eq!(report.unreadable.len(), 1);
    assert_eq!(report.unreadable[0].0, "test block 1");
    accepted(&report);
}

#[test]
fn the_same_key_from_the_key_file_and_the_csr() {
    let p = pki();
    let report = validate::validate(
        &found(&[&p.leaf.der, &p.ca.der]),
        &expect(
            None,
            vec![key_file(&p.leaf), csr_key(&p.leaf, "www.example.com")],
        ),
        std::slice::from_ref(&p.root.der),
        now(),
    );
    // The key file matched first but knows no name; the CSR for the same key does. The
    // key file stays the match reported (upload needs the private key).
    let a = accepted(&report);
    assert_eq!(a.expected_name, "www.example.com");
    assert_eq!(a.key_source, "key file /etc/ssl/private/www.key");
    let id: PublicKeyId = key_file(&p.leaf).key;
    assert_eq!(id, csr_key(&p.leaf, "x.example.com").key);
}

#[test]
fn certificate_info_fields() {
    let p = pki();
    let info = CertificateInfo::parse(&p.ca.der).expect("parse");
    assert!(info.is_ca && !info.self_signed);
    assert!(info.subject.contains("Test DV CA") && info.issuer.contains("Test Root CA"));
    assert_eq!(info.not_after, ymd(2035, 1, 1));
    assert!(
        info.serial.chars().all(|c| c.is_ascii_hexdigit()),
        "{}",
        info.serial
    );
    assert_eq!(validate::date(info.not_before), "2021-01-01");
    assert!(CertificateInfo::parse(b"\x30\x00").is_err());
    assert_eq!(Rule::Chain.to_string(), "rule 4 (chain)");
}

/// A leaf that expired before its CA's validity began (the expired sample's shape): the CA
/// is valid today, so the rejection says "expired" once, and nothing about the CA's dates.
#[test]
fn an_expired_leaf_under_a_ca_valid_today_is_said_to_be_expired_once() {
    let p = pki();
    let young_ca =
        pki::intermediate_valid("Young DV CA", &p.root, ymd(2024, 1, 1), ymd(2049, 1, 1));
    let spec = LeafSpec::new(&["www.example.com"]).valid(ymd(2020, 1, 1), ymd(2021, 1, 1));
    let leaf = pki::leaf(&spec, &young_ca);
    let report = validate::validate(
        &found(&[&leaf.der, &young_ca.der]),
        &expect(Some("www.example.com"), vec![key_file(&leaf)]),
        std::slice::from_ref(&p.root.der),
        ymd(2026, 11, 29),
    );
    let r = rejected(&report);
    assert_eq!(rules(r), vec![Rule::Validity], "{:#?}", r.reasons);
    assert_eq!(
        reason(r, Rule::Validity),
        "rule 3 (validity): expired on 2021-01-01"
    );
}
