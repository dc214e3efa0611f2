//! Reading mails part by part: the structure of many mails in one command, and the
//! chosen sections of many mails in one command (`docs/imap.md` §1–§3).
//!
//! imap-proto parses BODYSTRUCTURE; its answer is turned into the extractor's own
//! [`Part`], within the extractor's nesting and part limits. A mail whose structure the
//! server does not give, or that either parser refuses, gets an error instead: the caller
//! fetches it whole.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use imap_proto::types::{
    BodyContentCommon, BodyStructure, ContentEncoding, MessageSection, SectionPath,
};

use super::{MailboxError, Session, protocol, uid_set};
use crate::extract::parts::{Leaf, Part, Piece, Section};

/// How deep and how many parts a structure may have before it is refused (the
/// extractor's `max_mime_depth` and `max_parts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StructureLimits {
    pub max_depth: usize,
    pub max_parts: usize,
}

/// UIDs per `UID FETCH ... BODYSTRUCTURE`: an answer of a few hundred bytes each.
const STRUCTURES_PER_COMMAND: usize = 2000;

/// The structure of one mail, or why there is none to use.
pub type Structure = Result<Part, String>;

/// What the server said of one mail before it is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// RFC822.SIZE, if the server gave it.
    pub size: Option<u32>,
    pub structure: Structure,
}

impl Described {
    fn none() -> Described {
        Described {
            size: None,
            structure: Err("the server sent no BODYSTRUCTURE".into()),
        }
    }
}

/// Chunks of UIDs described on a second connection, in order, while the first works on the
/// chunk before ([`Session::describe_ahead`]). Dropped, it stops the thread after its
/// current command and waits for it to log out.
pub struct DescribedAhead {
    chunks: Option<Receiver<Result<BTreeMap<u32, Described>, MailboxError>>>,
    thread: Option<JoinHandle<()>>,
}

impl DescribedAhead {
    /// The next chunk's sizes and structures; `None` once the second connection failed or
    /// ended (said at info level once): the caller describes the rest itself.
    pub fn next_chunk(&mut self) -> Option<BTreeMap<u32, Described>> {
        let why = match self.chunks.as_ref()?.recv() {
            Ok(Ok(described)) => return Some(described),
            Ok(Err(error)) => error.to_string(),
            Err(_) => "it ended".to_string(),
        };
        log::info!("second IMAP connection not used: {why}; describing new mail on the first");
        self.chunks = None;
        None
    }
}

impl Drop for DescribedAhead {
    fn drop(&mut self) {
        self.chunks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Session {
    /// Describes `chunks` in order on a second connection (the same settings, the folder
    /// EXAMINEd and used only if its UIDVALIDITY is this session's) in a thread, handing
    /// each over through a channel of one, so at most about two chunks wait in memory.
    ///
    /// Why: on a first scan Dovecot parses every mail for BODYSTRUCTURE while fulfill
    /// waits, then fulfill fetches parts, imports and commits while Dovecot waits (at
    /// 100,000 mails about 4.4 s and 3.8 s of an 8.2 s scan, docs/imap.md §4). On two
    /// connections the next chunk is parsed while this one's parts are imported.
    pub fn describe_ahead(&self, chunks: Vec<Vec<u32>>, limits: StructureLimits) -> DescribedAhead {
        let (sender, receiver) = sync_channel(1);
        let (settings, traffic) = (self.settings.clone(), Arc::clone(&self.traffic));
        let uidvalidity = self.selected.as_ref().map(|selected| selected.1);
        let work = move || {
            let opened = Session::connect(&settings).and_then(|mut session| {
                let status = session.examine(&settings.folder)?;
                if Some(status.uidvalidity) == uidvalidity {
                    return Ok(session);
                }
                session.logout();
                Err(MailboxError::Protocol {
                    what: format!("EXAMINE {} (second connection)", settings.folder),
                    cause: format!("UIDVALIDITY {} differs", status.uidvalidity),
                })
            });
            let mut session = match opened {
                Ok(session) => session,
                Err(error) => return drop(sender.send(Err(error))),
            };
            for chunk in chunks {
                let described = session.describe(&chunk, limits);
                let failed = described.is_err();
                // Err: the scan ended (the receiver is gone).
                if sender.send(described).is_err() || failed {
                    break;
                }
            }
            // Its bytes count with the first connection's.
            (traffic.read).fetch_add(session.traffic.read.load(Relaxed), Relaxed);
            (traffic.written).fetch_add(session.traffic.written.load(Relaxed), Relaxed);
            session.logout();
        };
        let thread = std::thread::Builder::new().name("describe-ahead".into());
        DescribedAhead {
            chunks: Some(receiver),
            // Not started: the receiver finds the channel closed, and the scan goes on alone.
            thread: thread.spawn(work).ok(),
        }
    }

    /// The size and structure of each UID, asked for together, many UIDs per command (the
    /// server parses each mail once for both). A server that refuses the command (NO, BAD)
    /// or whose answer imap-proto cannot parse gives an error for every UID of that command,
    /// and their sizes are asked for alone; after a parse failure the connection is opened
    /// again (imap leaves the rest of the answer unread), and the folder selected again.
    pub fn describe(
        &mut self,
        uids: &[u32],
        limits: StructureLimits,
    ) -> Result<BTreeMap<u32, Described>, MailboxError> {
        let mut found = BTreeMap::new();
        for chunk in uids.chunks(STRUCTURES_PER_COMMAND) {
            let answer = self
                .imap
                .uid_fetch(uid_set(chunk), "(RFC822.SIZE BODYSTRUCTURE)");
            let refused = match answer {
                Ok(fetches) => {
                    for fetch in fetches.iter() {
                        let Some(uid) = fetch.uid else { continue };
                        let described = found.entry(uid).or_insert_with(Described::none);
                        described.size = described.size.or(fetch.size);
                        if let Some(structure) = fetch.bodystructure() {
                            described.structure = convert(structure, limits);
                        }
                    }
                    None
                }
                Err(imap::Error::No(no)) => Some(no.information),
                Err(imap::Error::Bad(bad)) => Some(bad.information),
                Err(imap::Error::Bye(_) | imap::Error::Parse(_)) => {
                    self.reconnect()?;
                    Some("an answer imap-proto could not parse".to_string())
                }
                Err(other) => {
                    return Err(protocol("UID FETCH BODYSTRUCTURE", self.io_timeout)(other));
                }
            };
            if let Some(why) = refused {
                for (uid, size) in self.sizes(chunk)? {
                    found.insert(
                        uid,
                        Described {
                            size: Some(size),
                            structure: Err(format!("BODYSTRUCTURE: {why}")),
                        },
                    );
                }
            }
        }
        Ok(found)
    }

    /// The same sections of each UID, in one command (`BODY.PEEK`, so nothing is marked
    /// \Seen). A section the server leaves out is missing from that UID's map.
    pub fn fetch_sections(
        &mut self,
        uids: &[u32],
        sections: &[Section],
    ) -> Result<BTreeMap<u32, BTreeMap<Section, Vec<u8>>>, MailboxError> {
        let items: Vec<String> = sections.iter().map(|s| format!("BODY.PEEK[{s}]")).collect();
        let set = uid_set(uids);
        let fetches = match self.imap.uid_fetch(&set, format!("({})", items.join(" "))) {
            Ok(fetches) => fetches,
            Err(error) => {
                let error = protocol(&format!("UID FETCH {set} (parts)"), self.io_timeout)(error);
                if error.is_refusal() {
                    // NO or BAD (a server that cannot send these sections, or one mail it
                    // cannot read): the connection is fine, and each mail is read whole
                    // on it, so one refusal does not stop every run at this batch.
                    log::warn!("{error}; reading these mails one by one");
                    return Ok(BTreeMap::new());
                }
                if !error.is_too_large() && !matches!(error, MailboxError::Protocol { .. }) {
                    return Err(error);
                }
                // More than the parts' sizes said, or an answer imap could not read: the
                // connection is given up, and each mail is read on its own, whole, where
                // a lie is told apart from the others and recorded.
                log::warn!("{error}; reading these mails one by one");
                self.reconnect()?;
                return Ok(BTreeMap::new());
            }
        };
        let mut found: BTreeMap<u32, BTreeMap<Section, Vec<u8>>> = BTreeMap::new();
        for fetch in fetches.iter() {
            let Some(uid) = fetch.uid.filter(|uid| uids.contains(uid)) else {
                continue;
            };
            let mine = found.entry(uid).or_default();
            for section in sections {
                let bytes = match *section == Section::whole() {
                    true => fetch.body(),
                    false => fetch.section(&section_path(section)),
                };
                if let Some(bytes) = bytes {
                    mine.insert(section.clone(), bytes.to_vec());
                }
            }
        }
        Ok(found)
    }
}

/// imap-proto's name of a section, to find it in the answer.
fn section_path(section: &Section) -> SectionPath {
    let piece = match section.piece {
        Piece::Header => Some(MessageSection::Header),
        Piece::Mime => Some(MessageSection::Mime),
        Piece::Body => None,
    };
    match (section.path.is_empty(), piece) {
        (true, Some(piece)) => SectionPath::Full(piece),
        (_, piece) => SectionPath::Part(section.path.clone(), piece),
    }
}

/// imap-proto's structure as the extractor's, refused past the limits.
fn convert(structure: &BodyStructure<'_>, limits: StructureLimits) -> Structure {
    let mut parts = 0;
    convert_at(structure, 0, limits, &mut parts)
}

fn convert_at(
    structure: &BodyStructure<'_>,
    depth: usize,
    limits: StructureLimits,
    parts: &mut usize,
) -> Structure {
    *parts += 1;
    if *parts > limits.max_parts {
        return Err(format!(
            "more than {} MIME parts (max_parts)",
            limits.max_parts
        ));
    }
    if depth > limits.max_depth {
        return Err(format!(
            "nested more than {} deep (max_mime_depth)",
            limits.max_depth
        ));
    }
    Ok(match structure {
        BodyStructure::Basic { common, other, .. } | BodyStructure::Text { common, other, .. } => {
            Part::Single(leaf(common, u64::from(other.octets)))
        }
        BodyStructure::Message { other, body, .. } => Part::Message {
            octets: u64::from(other.octets),
            plain: matches!(
                other.transfer_encoding,
                ContentEncoding::SevenBit | ContentEncoding::EightBit | ContentEncoding::Binary
            ),
            inner: Box::new(convert_at(body, depth + 1, limits, parts)?),
        },
        BodyStructure::Multipart { bodies, .. } => Part::Multipart(
            bodies
                .iter()
                .map(|body| convert_at(body, depth + 1, limits, parts))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn leaf(common: &BodyContentCommon<'_>, octets: u64) -> Leaf {
    let param = |params: &imap_proto::types::BodyParams<'_>, key: &str| {
        params.as_ref().and_then(|params| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.to_string())
        })
    };
    let filename = common
        .disposition
        .as_ref()
        .and_then(|d| param(&d.params, "filename"));
    Leaf {
        ty: common.ty.ty.to_ascii_lowercase(),
        subtype: common.ty.subtype.to_ascii_lowercase(),
        name: filename.or_else(|| param(&common.ty.params, "name")),
        octets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[u8]) -> Structure {
        let (_, response) = imap_proto::parser::parse_response(line).expect("parses");
        let imap_proto::Response::Fetch(_, attributes) = response else {
            panic!("not a FETCH")
        };
        let structure = attributes
            .iter()
            .find_map(|a| match a {
                imap_proto::AttributeValue::BodyStructure(s) => Some(s),
                _ => None,
            })
            .expect("a BODYSTRUCTURE");
        convert(
            structure,
            StructureLimits {
                max_depth: 20,
                max_parts: 1000,
            },
        )
    }

    #[test]
    fn dovecots_answer_for_a_text_with_a_pdf_and_a_forward() {
        // As Dovecot 2.3 answers (spaces and NILs as sent).
        let line = b"* 1 FETCH (UID 7 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 120 3 NIL NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"invoice.pdf\") NIL NIL \"base64\" 300000 NIL (\"attachment\" (\"filename\" \"Invoice.PDF\")) NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 900 (NIL \"fwd\" NIL NIL NIL NIL NIL NIL NIL NIL) ((\"text\" \"plain\" NIL NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL)(\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 600 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL) 20 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"a\") NIL NIL NIL))\r\n";
        let Part::Multipart(parts) = parse(line).expect("converted") else {
            panic!()
        };
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[1],
            Part::Single(Leaf {
                ty: "application".into(),
                subtype: "pdf".into(),
                name: Some("Invoice.PDF".into()),
                octets: 300_000
            })
        );
        let Part::Message {
            plain: true,
            octets: 900,
            inner,
        } = &parts[2]
        else {
            panic!("{:?}", parts[2])
        };
        assert!(matches!(&**inner, Part::Multipart(p) if p.len() == 2));
    }

    #[test]
    fn structures_past_the_limits_are_refused() {
        let line = b"* 1 FETCH (UID 7 BODYSTRUCTURE ((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL NIL NIL NIL)(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL))\r\n";
        let (_, response) = imap_proto::parser::parse_response(line).unwrap();
        let imap_proto::Response::Fetch(_, attributes) = response else {
            panic!()
        };
        let imap_proto::AttributeValue::BodyStructure(s) = &attributes[1] else {
            panic!("{attributes:?}")
        };
        let tight = StructureLimits {
            max_depth: 20,
            max_parts: 2,
        };
        assert!(convert(s, tight).unwrap_err().contains("max_parts"));
        let shallow = StructureLimits {
            max_depth: 0,
            max_parts: 100,
        };
        assert!(convert(s, shallow).unwrap_err().contains("max_mime_depth"));
    }

    #[test]
    fn sections_are_named_as_imap_proto_names_them() {
        assert_eq!(
            section_path(&Section::header(&[])),
            SectionPath::Full(MessageSection::Header)
        );
        assert_eq!(
            section_path(&Section {
                path: vec![2, 1],
                piece: Piece::Mime
            }),
            SectionPath::Part(vec![2, 1], Some(MessageSection::Mime))
        );
        assert_eq!(
            section_path(&Section {
                path: vec![3],
                piece: Piece::Body
            }),
            SectionPath::Part(vec![3], None)
        );
    }
}
