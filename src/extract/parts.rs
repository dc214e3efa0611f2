//! Which MIME parts can hold a certificate, and, from a mail's structure as the IMAP server
//! describes it (RFC 3501 BODYSTRUCTURE, `docs/imap.md` §1), which sections to fetch so
//! that the mail can be read without its big attachments (`docs/imap.md` §3).
//!
//! The list of types and names ([`may_hold_certificate`]) is the one the MIME walker uses
//! to decide which attachments to look inside (`mime.rs`): a mail read part by part and the
//! same mail read whole give the same certificates.
//!
//! Pure: the structure and the limits in, the sections out; the fetched sections in, a
//! smaller message out ([`rebuild`]), which the extractor reads like any other.

use std::collections::BTreeMap;
use std::fmt;

/// Media subtypes of `application/` that are certificate material or can carry it. A
/// `*` at the end matches any rest (`x-x509-ca-cert`, `pkcs7-mime`, `x-pkcs7-certificates`).
const APPLICATION_TYPES: &[&str] = &[
    "pkix-cert",
    "pkix-pkipath",
    "x-x509-*",
    "pkcs7-*",
    "x-pkcs7-*",
    "pkcs10",
    "x-pem-file",
    "zip",
    "x-zip-compressed",
    "octet-stream",
];

/// File name endings of certificate material, whatever type the sender gave.
const FILE_ENDINGS: &[&str] = &[
    ".crt", ".cer", ".der", ".pem", ".p7b", ".p7c", ".zip", ".csr",
];

/// Whether the extractor looks inside a part of this type (`ty/subtype`, any case) and
/// file name: text, the certificate types of [`APPLICATION_TYPES`], octet-stream (a
/// certificate sent without a type of its own), or a certificate file name. Not a PDF,
/// an image, a document. Forwarded messages and multiparts are walked, not judged here.
pub fn may_hold_certificate(ty: &str, subtype: &str, name: Option<&str>) -> bool {
    let subtype = subtype.to_ascii_lowercase();
    let by_type = ty.eq_ignore_ascii_case("text")
        || (ty.eq_ignore_ascii_case("application")
            && APPLICATION_TYPES
                .iter()
                .any(|known| match known.strip_suffix('*') {
                    Some(prefix) => subtype.starts_with(prefix),
                    None => subtype == *known,
                }));
    let by_name = name.is_some_and(|name| {
        let name = name.trim().to_ascii_lowercase();
        FILE_ENDINGS.iter().any(|ending| name.ends_with(ending))
    });
    by_type || by_name
}

/// A mail's MIME structure, as the server described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A part that holds content.
    Single(Leaf),
    Multipart(Vec<Part>),
    /// A forwarded message (`message/rfc822`) and the structure of the message inside.
    Message {
        /// Bytes of the forwarded message as it is in the mail.
        octets: u64,
        /// Its Content-Transfer-Encoding is 7bit, 8bit or binary: the server can number
        /// the parts inside it. An encoded forward is taken whole.
        plain: bool,
        inner: Box<Part>,
    },
}

/// What the structure says of a part that holds content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub ty: String,
    pub subtype: String,
    /// The file name: the disposition's `filename`, or the type's `name`.
    pub name: Option<String>,
    /// Bytes of the body as it is in the mail (still transfer-encoded).
    pub octets: u64,
}

impl Leaf {
    fn may_hold_certificate(&self) -> bool {
        may_hold_certificate(&self.ty, &self.subtype, self.name.as_deref())
    }
}

impl fmt::Display for Leaf {
    /// "application/pdf 'invoice.pdf', 300000 bytes"
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ty, self.subtype)?;
        if let Some(name) = &self.name {
            write!(f, " '{}'", crate::text::printable(name))?;
        }
        write!(f, ", {} bytes", self.octets)
    }
}

/// A section of a mail, as IMAP numbers them (RFC 3501 §6.4.5, `docs/imap.md` §1): the
/// part numbers from the top, and which piece of that part.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Section {
    pub path: Vec<u32>,
    pub piece: Piece,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Piece {
    /// The header of the message (the top one, or a forwarded one at `path`).
    Header,
    /// The MIME header lines of the part at `path`.
    Mime,
    /// The body of the part at `path`, as it is in the mail.
    Body,
}

impl Section {
    /// The whole message (`BODY[]`).
    pub fn whole() -> Section {
        Section {
            path: Vec::new(),
            piece: Piece::Body,
        }
    }

    pub fn header(path: &[u32]) -> Section {
        Section {
            path: path.to_vec(),
            piece: Piece::Header,
        }
    }
    fn mime(path: &[u32]) -> Section {
        Section {
            path: path.to_vec(),
            piece: Piece::Mime,
        }
    }
    fn body(path: &[u32]) -> Section {
        Section {
            path: path.to_vec(),
            piece: Piece::Body,
        }
    }
}

impl fmt::Display for Section {
    /// As in `BODY.PEEK[...]`: "HEADER", "2.MIME", "2.1", "3.HEADER".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path: Vec<String> = self.path.iter().map(u32::to_string).collect();
        let path = path.join(".");
        let piece = match self.piece {
            Piece::Header => "HEADER",
            Piece::Mime => "MIME",
            Piece::Body => return f.write_str(&path),
        };
        match path.is_empty() {
            true => f.write_str(piece),
            false => write!(f, "{path}.{piece}"),
        }
    }
}

/// What to fetch of one mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The whole mail, as before structures were read: it is one part that can hold a
    /// certificate, or its structure could not be used.
    Whole,
    /// Nothing: no part can hold a certificate.
    Nothing { skipped: Vec<Skipped> },
    /// These parts, and the headers that frame them.
    Parts(Plan),
}

/// The parts of a mail to fetch, and those left on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub chosen: Vec<Chosen>,
    pub skipped: Vec<Skipped>,
}

/// A part to fetch: its MIME header and body; or, for a forward read by its own
/// structure, its MIME header, the forwarded message's header, and the parts inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    Part(Vec<u32>),
    Forward { path: Vec<u32>, chosen: Vec<Chosen> },
}

/// A part not fetched, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: Vec<u32>,
    pub what: String,
    pub octets: u64,
    pub over_limit: bool,
}

impl fmt::Display for Skipped {
    /// "part 2 (application/pdf 'x.pdf', 300000 bytes)", and why when it is the limit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path: Vec<String> = self.path.iter().map(u32::to_string).collect();
        write!(f, "part {} ({})", path.join("."), self.what)?;
        if self.over_limit {
            f.write_str(" over max_message_size")?;
        }
        Ok(())
    }
}

impl Plan {
    /// Every section to fetch, in a fixed order: the same plan asks the same items.
    pub fn sections(&self) -> Vec<Section> {
        let mut sections = vec![Section::header(&[])];
        add_sections(&self.chosen, &mut sections);
        sections
    }
}

fn add_sections(chosen: &[Chosen], out: &mut Vec<Section>) {
    for chosen in chosen {
        match chosen {
            Chosen::Part(path) => out.extend([Section::mime(path), Section::body(path)]),
            Chosen::Forward { path, chosen } => {
                out.extend([Section::mime(path), Section::header(path)]);
                add_sections(chosen, out);
            }
        }
    }
}

impl Choice {
    /// Bytes of the mail left on the server: what the chosen sections save.
    pub fn skipped_octets(&self) -> u64 {
        let skipped = match self {
            Choice::Whole => return 0,
            Choice::Nothing { skipped } => skipped,
            Choice::Parts(plan) => &plan.skipped,
        };
        skipped.iter().map(|s| s.octets).sum()
    }
}

/// The sections to fetch of a mail of this structure: every part that
/// [`may_hold_certificate`], each within `max_part_size`; forwarded messages by their own
/// structure. A mail that is a single part is taken whole when it may hold a certificate.
pub fn choose(structure: &Part, max_part_size: u64) -> Choice {
    let Part::Multipart(parts) = structure else {
        return match structure {
            Part::Single(leaf) if !leaf.may_hold_certificate() => Choice::Nothing {
                skipped: vec![skipped(&[1], leaf, false)],
            },
            _ => Choice::Whole,
        };
    };
    let mut plan = Plan {
        chosen: Vec::new(),
        skipped: Vec::new(),
    };
    choose_children(
        parts,
        &[],
        max_part_size,
        &mut plan.chosen,
        &mut plan.skipped,
    );
    if plan.chosen.is_empty() {
        return Choice::Nothing {
            skipped: plan.skipped,
        };
    }
    Choice::Parts(plan)
}

/// The children of a multipart at `parent`: numbered from 1 below it.
fn choose_children(
    parts: &[Part],
    parent: &[u32],
    max: u64,
    chosen: &mut Vec<Chosen>,
    skips: &mut Vec<Skipped>,
) {
    for (index, part) in parts.iter().enumerate() {
        let mut path = parent.to_vec();
        path.push(u32::try_from(index + 1).unwrap_or(u32::MAX));
        choose_part(part, path, max, chosen, skips);
    }
}

fn choose_part(
    part: &Part,
    path: Vec<u32>,
    max: u64,
    chosen: &mut Vec<Chosen>,
    skips: &mut Vec<Skipped>,
) {
    match part {
        Part::Multipart(children) => choose_children(children, &path, max, chosen, skips),
        Part::Single(leaf) if !leaf.may_hold_certificate() => {
            skips.push(skipped(&path, leaf, false));
        }
        Part::Single(leaf) if leaf.octets > max => skips.push(skipped(&path, leaf, true)),
        Part::Single(_) => chosen.push(Chosen::Part(path)),
        Part::Message {
            plain: true, inner, ..
        } if matches!(**inner, Part::Multipart(_)) => {
            let mut inside = Vec::new();
            // The parts of a multipart forward are numbered below the forward's own number.
            if let Part::Multipart(children) = &**inner {
                choose_children(children, &path, max, &mut inside, skips);
            }
            if !inside.is_empty() {
                chosen.push(Chosen::Forward {
                    path,
                    chosen: inside,
                });
            }
        }
        Part::Message { inner, octets, .. } => {
            choose_forward_whole(inner, *octets, path, max, chosen, skips)
        }
    }
}

/// A forward that is one part, or is encoded: fetched whole if what it holds may hold a
/// certificate and it is within the limit.
fn choose_forward_whole(
    inner: &Part,
    octets: u64,
    path: Vec<u32>,
    max: u64,
    chosen: &mut Vec<Chosen>,
    skips: &mut Vec<Skipped>,
) {
    let forward = Leaf {
        ty: "message".into(),
        subtype: "rfc822".into(),
        name: None,
        octets,
    };
    match inner {
        Part::Single(leaf) if !leaf.may_hold_certificate() => {
            let mut inner_path = path.clone();
            inner_path.push(1);
            skips.push(skipped(&inner_path, leaf, false));
        }
        _ if octets > max => skips.push(skipped(&path, &forward, true)),
        _ => chosen.push(Chosen::Part(path)),
    }
}

fn skipped(path: &[u32], leaf: &Leaf, over_limit: bool) -> Skipped {
    Skipped {
        path: path.to_vec(),
        what: leaf.to_string(),
        octets: leaf.octets,
        over_limit,
    }
}

/// The boundary of the rebuilt multiparts, numbered by depth: [`rebuild`] gives up on a
/// mail any of whose fetched sections (headers included) holds it, which is then fetched
/// whole: a line of it in a part's header or body would end that part early.
const BOUNDARY: &str = "fulfill-rebuilt-7c1e2a9d";

/// A message the extractor reads as it would the real one: the real header (so its
/// Message-ID, From and Subject), with its Content-Type made a `multipart/mixed` of the
/// chosen parts, each with its own MIME header lines and body as fetched; a forward read
/// by parts likewise inside its part. `None` when a section is missing from `fetched`
/// (the server sent less than asked: the caller fetches the mail whole).
pub fn rebuild(plan: &Plan, fetched: &BTreeMap<Section, Vec<u8>>) -> Option<Vec<u8>> {
    if fetched
        .values()
        .any(|bytes| contains(bytes, BOUNDARY.as_bytes()))
    {
        return None;
    }
    let header = fetched.get(&Section::header(&[]))?;
    let mut out = Vec::new();
    rebuild_message(header, &plan.chosen, fetched, 0, &mut out)?;
    Some(out)
}

fn rebuild_message(
    header: &[u8],
    chosen: &[Chosen],
    fetched: &BTreeMap<Section, Vec<u8>>,
    depth: usize,
    out: &mut Vec<u8>,
) -> Option<()> {
    let boundary = format!("{BOUNDARY}-{depth}");
    out.extend_from_slice(&without_content_headers(header));
    out.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n").as_bytes(),
    );
    for chosen in chosen {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match chosen {
            Chosen::Part(path) => {
                out.extend_from_slice(&header_block(fetched.get(&Section::mime(path))?));
                out.extend_from_slice(fetched.get(&Section::body(path))?);
            }
            Chosen::Forward { path, chosen } => {
                out.extend_from_slice(&without_content_headers(fetched.get(&Section::mime(path))?));
                out.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
                let header = fetched.get(&Section::header(path))?;
                rebuild_message(header, chosen, fetched, depth + 1, out)?;
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Some(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A part's MIME header lines as a header block: up to its first blank line, ended by
/// one. What a server sends after a blank line, or a header without one, cannot then
/// turn the body's first lines into header fields or add lines of its own after them.
fn header_block(header: &[u8]) -> Vec<u8> {
    let mut out = header_lines(header, false);
    out.extend_from_slice(b"\r\n");
    out
}

/// A header section without its blank last line and without the fields that say how the
/// body is framed (Content-Type, Content-Transfer-Encoding), folded lines included:
/// [`rebuild`] writes its own.
fn without_content_headers(header: &[u8]) -> Vec<u8> {
    header_lines(header, true)
}

/// The lines of a header section up to its first blank line, each ended by a line break;
/// without the framing fields (and their folded lines) when `drop_framing`.
fn header_lines(header: &[u8], drop_framing: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 2);
    let mut dropping = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !folded {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let name = name.trim_ascii().to_ascii_lowercase();
            dropping =
                drop_framing && (name == b"content-type" || name == b"content-transfer-encoding");
        }
        if !dropping {
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(ty: &str, subtype: &str, name: Option<&str>, octets: u64) -> Part {
        Part::Single(Leaf {
            ty: ty.into(),
            subtype: subtype.into(),
            name: name.map(str::to_string),
            octets,
        })
    }
    fn text(octets: u64) -> Part {
        leaf("text", "plain", None, octets)
    }
    fn pdf() -> Part {
        leaf("application", "pdf", Some("invoice.pdf"), 300_000)
    }
    fn forward(inner: Part) -> Part {
        Part::Message {
            octets: 5000,
            plain: true,
            inner: Box::new(inner),
        }
    }
    const MAX: u64 = 1024 * 1024;

    fn plan(choice: Choice) -> Plan {
        match choice {
            Choice::Parts(plan) => plan,
            other => panic!("expected parts, got {other:?}"),
        }
    }
    fn items(plan: &Plan) -> Vec<String> {
        plan.sections().iter().map(Section::to_string).collect()
    }

    #[test]
    fn the_list_takes_text_certificate_types_octet_stream_and_certificate_names() {
        for (ty, subtype, name) in [
            ("text", "plain", None),
            ("TEXT", "HTML", None),
            ("application", "pkix-cert", None),
            ("application", "x-x509-ca-cert", None),
            ("application", "x-x509-user-cert", None),
            ("application", "pkcs7-mime", None),
            ("application", "x-pkcs7-certificates", None),
            ("application", "zip", None),
            ("Application", "Octet-Stream", None),
            ("application", "pdf", Some("cert.CRT")),
            ("image", "png", Some("chain.p7b")),
            ("application", "binary", Some("bundle.zip ")),
        ] {
            assert!(
                may_hold_certificate(ty, subtype, name),
                "{ty}/{subtype} {name:?}"
            );
        }
        for (ty, subtype, name) in [
            ("application", "pdf", Some("invoice.pdf")),
            ("application", "pdf", None),
            ("image", "png", Some("seal.png")),
            ("image", "jpeg", None),
            ("application", "msword", Some("report.doc")),
            ("audio", "basic", None),
            ("application", "pkcs7", Some("crt.txt.exe")),
        ] {
            assert!(
                !may_hold_certificate(ty, subtype, name),
                "{ty}/{subtype} {name:?}"
            );
        }
    }

    #[test]
    fn a_text_and_a_pdf_fetch_the_text_only() {
        let structure = Part::Multipart(vec![text(400), pdf()]);
        let choice = choose(&structure, MAX);
        assert_eq!(choice.skipped_octets(), 300_000);
        let plan = plan(choice);
        assert_eq!(items(&plan), ["HEADER", "1.MIME", "1"]);
        assert_eq!(
            plan.skipped[0].to_string(),
            "part 2 (application/pdf 'invoice.pdf', 300000 bytes)"
        );
    }

    #[test]
    fn only_a_pdf_or_an_image_fetches_nothing() {
        let structure = Part::Multipart(vec![pdf(), leaf("image", "png", Some("logo.png"), 9000)]);
        let Choice::Nothing { skipped } = choose(&structure, MAX) else {
            panic!()
        };
        assert_eq!(skipped.len(), 2);
        let Choice::Nothing { skipped } = choose(&pdf(), MAX) else {
            panic!()
        };
        assert_eq!(skipped[0].path, [1]);
        assert_eq!(
            choose(&leaf("image", "gif", None, 10), MAX),
            Choice::Nothing {
                skipped: vec![Skipped {
                    path: vec![1],
                    what: "image/gif, 10 bytes".into(),
                    octets: 10,
                    over_limit: false
                }]
            }
        );
    }

    #[test]
    fn a_single_part_that_may_hold_a_certificate_is_fetched_whole() {
        assert_eq!(choose(&text(100), MAX), Choice::Whole);
        assert_eq!(
            choose(&leaf("application", "pkix-cert", None, 900), MAX),
            Choice::Whole
        );
    }

    #[test]
    fn nested_multiparts_are_numbered_from_the_top() {
        // mixed( alternative(text, html), related(html, image), octet-stream without name, zip )
        let structure = Part::Multipart(vec![
            Part::Multipart(vec![text(10), leaf("text", "html", None, 20)]),
            Part::Multipart(vec![
                leaf("text", "html", None, 20),
                leaf("image", "png", None, 5),
            ]),
            leaf("application", "octet-stream", None, 1200),
            leaf("application", "zip", Some("cert.zip"), 3000),
            leaf(
                "application",
                "x-pkcs7-certificates",
                Some("chain.p7b"),
                3000,
            ),
        ]);
        let plan = plan(choose(&structure, MAX));
        assert_eq!(
            items(&plan),
            [
                "HEADER", "1.1.MIME", "1.1", "1.2.MIME", "1.2", "2.1.MIME", "2.1", "3.MIME", "3",
                "4.MIME", "4", "5.MIME", "5"
            ]
        );
        assert_eq!(plan.skipped.len(), 1);
        assert_eq!(plan.skipped[0].path, [2, 2]);
    }

    #[test]
    fn a_forward_is_read_by_its_own_structure() {
        let structure = Part::Multipart(vec![
            text(100),
            forward(Part::Multipart(vec![
                text(200),
                pdf(),
                leaf("application", "pkix-cert", Some("c.cer"), 1500),
            ])),
        ]);
        let plan = plan(choose(&structure, MAX));
        assert_eq!(
            items(&plan),
            [
                "HEADER", "1.MIME", "1", "2.MIME", "2.HEADER", "2.1.MIME", "2.1", "2.3.MIME", "2.3"
            ]
        );
        assert_eq!(plan.skipped[0].path, [2, 2]);

        // A forward that is one text part is taken whole; one that is a PDF is not.
        let plan = plan_of(Part::Multipart(vec![pdf(), forward(text(10))]));
        assert_eq!(items(&plan), ["HEADER", "2.MIME", "2"]);
        let Choice::Nothing { skipped } = choose(&Part::Multipart(vec![forward(pdf())]), MAX)
        else {
            panic!()
        };
        assert_eq!(skipped[0].path, [1, 1]);
        // An encoded forward is taken whole, whatever is inside.
        let encoded = Part::Message {
            octets: 900,
            plain: false,
            inner: Box::new(Part::Multipart(vec![pdf()])),
        };
        assert_eq!(
            items(&plan_of(Part::Multipart(vec![encoded]))),
            ["HEADER", "1.MIME", "1"]
        );
    }

    fn plan_of(structure: Part) -> Plan {
        plan(choose(&structure, MAX))
    }

    #[test]
    fn a_part_over_the_limit_is_not_fetched_and_said_so() {
        let structure = Part::Multipart(vec![
            text(100),
            leaf("application", "zip", Some("huge.zip"), MAX + 1),
        ]);
        let plan = plan(choose(&structure, MAX));
        assert_eq!(items(&plan), ["HEADER", "1.MIME", "1"]);
        assert!(plan.skipped[0].over_limit);
        assert!(
            plan.skipped[0]
                .to_string()
                .ends_with("over max_message_size"),
            "{}",
            plan.skipped[0]
        );
    }

    fn fetched(pairs: &[(&str, &str)], plan: &Plan) -> BTreeMap<Section, Vec<u8>> {
        let sections = plan.sections();
        pairs
            .iter()
            .map(|(name, bytes)| {
                let section = sections
                    .iter()
                    .find(|s| s.to_string() == *name)
                    .expect(name)
                    .clone();
                (section, bytes.as_bytes().to_vec())
            })
            .collect()
    }

    #[test]
    fn the_rebuilt_message_keeps_the_header_and_frames_the_parts() {
        let structure = Part::Multipart(vec![
            text(5),
            pdf(),
            forward(Part::Multipart(vec![text(5), pdf()])),
        ]);
        let plan = plan(choose(&structure, MAX));
        let parts = fetched(
            &[
                (
                    "HEADER",
                    "From: a@b\r\nContent-Type: multipart/mixed;\r\n boundary=\"x\"\r\nMessage-ID: <m@b>\r\n\r\n",
                ),
                ("1.MIME", "Content-Type: text/plain\r\n\r\n"),
                ("1", "hello"),
                (
                    "3.MIME",
                    "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n",
                ),
                (
                    "3.HEADER",
                    "Subject: fwd\r\nContent-Type: multipart/mixed; boundary=y\r\n\r\n",
                ),
                ("3.1.MIME", "Content-Type: text/plain\r\n\r\n"),
                ("3.1", "inner"),
            ],
            &plan,
        );
        let rebuilt = String::from_utf8(rebuild(&plan, &parts).unwrap()).unwrap();
        let b0 = format!("{BOUNDARY}-0");
        let b1 = format!("{BOUNDARY}-1");
        assert_eq!(
            rebuilt,
            format!(
                "From: a@b\r\nMessage-ID: <m@b>\r\nContent-Type: multipart/mixed; boundary=\"{b0}\"\r\n\r\n\
                 --{b0}\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
                 --{b0}\r\nContent-Disposition: inline\r\nContent-Type: message/rfc822\r\n\r\n\
                 Subject: fwd\r\nContent-Type: multipart/mixed; boundary=\"{b1}\"\r\n\r\n\
                 --{b1}\r\nContent-Type: text/plain\r\n\r\ninner\r\n--{b1}--\r\n\r\n--{b0}--\r\n"
            )
        );
        // A section the server did not send, or a part that holds the boundary: no rebuild.
        let mut missing = parts.clone();
        missing.retain(|s, _| s.to_string() != "3.1");
        assert_eq!(rebuild(&plan, &missing), None);
        let mut hostile = parts;
        for (section, bytes) in hostile.iter_mut() {
            if section.to_string() == "1" {
                *bytes = format!("--{BOUNDARY}-0--").into_bytes();
            }
        }
        assert_eq!(rebuild(&plan, &hostile), None);
    }

    /// A hostile part header: the rebuilt boundary in a part's MIME lines or in a
    /// forward's header gives up the rebuild (the mail is read whole), and MIME lines
    /// without their blank line, or with lines after it, stay a header block of their own.
    #[test]
    fn part_headers_cannot_add_parts_or_headers_to_the_rebuilt_message() {
        let structure = Part::Multipart(vec![
            text(5),
            forward(Part::Multipart(vec![text(5), pdf()])),
        ]);
        let plan = plan(choose(&structure, MAX));
        let honest = [
            ("HEADER", "From: a@b\r\n\r\n"),
            ("1.MIME", "Content-Type: text/plain\r\n\r\n"),
            ("1", "hello"),
            ("2.MIME", "Content-Type: message/rfc822\r\n\r\n"),
            ("2.HEADER", "Subject: fwd\r\n\r\n"),
            ("2.1.MIME", "Content-Type: text/plain\r\n\r\n"),
            ("2.1", "inner"),
        ];
        assert!(rebuild(&plan, &fetched(&honest, &plan)).is_some());
        let injected = format!("X-A: b\r\n--{BOUNDARY}-0\r\nContent-Type: text/plain\r\n\r\n");
        for section in ["1.MIME", "2.HEADER", "2.1.MIME", "HEADER"] {
            let mut pairs = honest.to_vec();
            for pair in pairs.iter_mut().filter(|(name, _)| *name == section) {
                pair.1 = &injected;
            }
            assert_eq!(rebuild(&plan, &fetched(&pairs, &plan)), None, "{section}");
        }
        let mut pairs = honest.to_vec();
        pairs[1].1 = "Content-Type: text/plain";
        pairs[5].1 = "Content-Type: text/plain\r\n\r\nX-Injected: yes\r\n\r\n";
        let rebuilt = String::from_utf8(rebuild(&plan, &fetched(&pairs, &plan)).unwrap()).unwrap();
        assert!(
            rebuilt.contains("Content-Type: text/plain\r\n\r\nhello\r\n")
                && rebuilt.contains("Content-Type: text/plain\r\n\r\ninner\r\n")
                && !rebuilt.contains("X-Injected"),
            "{rebuilt}"
        );
    }
}
