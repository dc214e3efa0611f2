//! A cheap walk over the raw message, before mail-parser builds its tree, that finds where
//! the tree would grow past [`Limits`]: the message is then cut there, and the parser
//! only ever reads a prefix whose tree is bounded.
//!
//! mail-parser builds the whole tree first, and only then can `mime.rs` apply `max_parts`:
//! 2.5 million empty parts in 17.5 MB cost 562 MB, 2.5 million header lines in 20 MB cost
//! 320 MB. This walk takes the same steps as `MessageParser::parse` (mail-parser 0.11,
//! `parsers/message.rs`), through the same public `MessageStream` primitives, so that it
//! sees the parts and header sections the parser will, but it keeps only counts: one
//! header section at a time, and no part. It counts three things, each against a limit:
//!
//! - the parts (one per header section), against `max_parts`;
//! - the bytes of header sections, against `max_header_size` (a header costs the parser
//!   about 130 bytes however short it is, and an address or parameter list more per byte);
//! - the bytes of text parts and of forwarded messages sent encoded, as they are in the
//!   mail, against `max_text_size` (a charset can triple text when it is decoded, and the
//!   parser keeps a decoded forward and a copy of its parts).
//!
//! The cut is where the first limit is passed: before the header section of the part one
//! over `max_parts`, or inside the header section or text body at the byte the budget ran
//! out. An encoded forward that passes a limit is cut whole, before its header section (or
//! its body, when the forward is the message itself): the parser would decode and parse
//! whatever part of it were left.

use mail_parser::parsers::MessageStream;
use mail_parser::{ContentType, GetHeader, Header, HeaderName, HeaderValue, MessageParser};

use super::Limits;

/// How deep mail-parser decodes and parses forwards sent encoded (its `MAX_NESTED_ENCODED`).
const NESTED_ENCODED: usize = 3;

/// Where to cut the message, and the problem that says which limit was passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub at: usize,
    pub what: String,
}

/// The first place where parsing `raw` would pass a limit, if there is one.
pub fn find_cut(raw: &[u8], parser: &MessageParser, limits: &Limits) -> Option<Cut> {
    let mut counts = Counts::default();
    let breach = walk(raw, NESTED_ENCODED, parser, limits, &mut counts).err()?;
    let what = match breach.limit {
        Limit::Parts => format!(
            "more than {} MIME parts (max_parts); the rest were not read",
            limits.max_parts
        ),
        Limit::HeaderSize => format!(
            "more than {} bytes of header lines in the message (max_header_size); \
             the rest was not read",
            limits.max_header_size
        ),
        Limit::TextSize => format!(
            "more than {} bytes of text parts and encoded forwards in the message \
             (max_text_size); the rest was not read",
            limits.max_text_size
        ),
    };
    Some(Cut {
        at: breach.at,
        what,
    })
}

/// The parts the parser will build from `raw` and the bytes of their header sections,
/// counted without limits: what the tests compare with the parser's tree.
#[cfg(test)]
pub fn count(raw: &[u8], parser: &MessageParser) -> (usize, usize) {
    let unlimited = Limits {
        max_parts: usize::MAX,
        max_header_size: usize::MAX,
        max_text_size: usize::MAX,
        ..Limits::default()
    };
    let mut counts = Counts::default();
    walk(raw, NESTED_ENCODED, parser, &unlimited, &mut counts).expect("no limit");
    (counts.parts, counts.part_header_bytes)
}

#[derive(Debug, Default)]
struct Counts {
    parts: usize,
    /// Every header section parsed, whether or not it ends in a part: the parser holds
    /// the headers of an unfinished one until it returns.
    header_bytes: usize,
    text_bytes: usize,
    /// The header sections of parts only: what the parser's tree records.
    #[cfg(test)]
    part_header_bytes: usize,
}

#[derive(Debug, Clone, Copy)]
enum Limit {
    Parts,
    HeaderSize,
    TextSize,
}

/// A limit passed at byte `at` of the buffer being walked.
#[derive(Debug)]
struct Breach {
    at: usize,
    limit: Limit,
}

/// mail-parser's `MimeType`, as far as the walk needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    MultipartDigest,
    OtherMultipart,
    TextPlain,
    Message,
    Other,
}

/// mail-parser's `MessageParserState`, as far as the walk needs it.
#[derive(Debug)]
struct State {
    kind: Kind,
    boundary: Option<Vec<u8>>,
}

/// mail-parser's `mime_type`: (is multipart, is text, kind).
fn kind_of(content_type: Option<&ContentType<'_>>, parent: Kind) -> (bool, bool, Kind) {
    match content_type {
        Some(ct) => match ct.ctype() {
            "multipart" => match ct.subtype() {
                Some("digest") => (true, false, Kind::MultipartDigest),
                _ => (true, false, Kind::OtherMultipart),
            },
            "text" => match ct.subtype() {
                Some("plain") => (false, true, Kind::TextPlain),
                _ => (false, true, Kind::Other),
            },
            "message" if matches!(ct.subtype(), Some("rfc822" | "global")) => {
                (false, false, Kind::Message)
            }
            _ => (false, false, Kind::Other),
        },
        None if parent == Kind::MultipartDigest => (false, false, Kind::Message),
        None => (false, true, Kind::TextPlain),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    None,
    Base64,
    QuotedPrintable,
}

fn encoding_of(headers: &Vec<Header<'_>>) -> Encoding {
    match headers.header_value(&HeaderName::ContentTransferEncoding) {
        Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("base64") => Encoding::Base64,
        Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("quoted-printable") => {
            Encoding::QuotedPrintable
        }
        _ => Encoding::None,
    }
}

/// `MessageParser::parse_` with counts in place of parts. Comments name the steps of the
/// original that each block mirrors.
///
/// Longer than the 80 lines a function here is held to, on purpose: it is one loop over
/// one state machine, block for block the original's (mail-parser 0.11,
/// `parsers/message.rs`), so that the two can be read side by side and kept in step when
/// the parser changes. Split into functions, that correspondence would be lost.
fn walk(
    data: &[u8],
    depth: usize,
    parser: &MessageParser,
    limits: &Limits,
    counts: &mut Counts,
) -> Result<(), Breach> {
    let mut stream = MessageStream::new(data);
    let mut state = State {
        kind: Kind::Message,
        boundary: None,
    };
    // (state, whether it was pushed for a forwarded message: `Some(message)` in the original)
    let mut stack: Vec<(State, bool)> = Vec::new();
    let mut headers: Vec<Header<'_>> = Vec::new();
    let mut parts_here = 0;

    'outer: loop {
        // "Parse headers", on a stream that ends where the header budget does, so that a
        // header section over the budget is never parsed whole.
        let offset_header = stream.offset();
        let budget = limits.max_header_size.saturating_sub(counts.header_bytes);
        let bound = data.len().min(offset_header.saturating_add(budget));
        headers.clear();
        let mut header_stream = MessageStream::new(&data[..bound]);
        if offset_header > 0 {
            header_stream.skip_bytes(offset_header);
        }
        let complete = header_stream.parse_headers(parser, &mut headers);
        if !complete && bound < data.len() {
            return Err(Breach {
                at: bound,
                limit: Limit::HeaderSize,
            });
        }
        let offset_body = header_stream.offset();
        counts.header_bytes += offset_body - offset_header;
        if offset_body > stream.offset() {
            stream.skip_bytes(offset_body - stream.offset());
        }
        if !complete {
            // "Message without a body": headers up to the end still make a part, if no
            // part came before them in this message.
            if parts_here == 0 && !headers.is_empty() {
                counts.parts += 1;
                #[cfg(test)]
                {
                    counts.part_header_bytes += offset_body - offset_header;
                }
            }
            break;
        }
        parts_here += 1;
        counts.parts += 1;
        #[cfg(test)]
        {
            counts.part_header_bytes += offset_body - offset_header;
        }
        if counts.parts > limits.max_parts {
            return Err(Breach {
                at: offset_header,
                limit: Limit::Parts,
            });
        }

        let content_type = headers
            .header_value(&HeaderName::ContentType)
            .and_then(|c| c.as_content_type());
        let (is_multipart, mut is_text, mut kind) = kind_of(content_type, state.kind);

        if is_multipart && let Some(boundary) = content_type.and_then(|c| c.attribute("boundary")) {
            if stream.seek_next_part(boundary.as_bytes()) {
                let inner = State {
                    kind,
                    boundary: Some(boundary.as_bytes().to_vec()),
                };
                stack.push((std::mem::replace(&mut state, inner), false));
                stream.skip_crlf();
                continue;
            }
            kind = Kind::Other;
            is_text = true;
        }

        let encoding = encoding_of(&headers);
        if kind == Kind::Message && encoding == Encoding::None {
            // A forward as sent: its parts follow in this same stream.
            let inner = State {
                kind: Kind::Message,
                boundary: state.boundary.take(),
            };
            stack.push((std::mem::replace(&mut state, inner), true));
            continue;
        }

        let boundary = state.boundary.as_deref().unwrap_or(&b""[..]);
        let (mut offset_end, decoded) = match encoding {
            Encoding::Base64 => stream.decode_base64_mime(boundary),
            Encoding::QuotedPrintable => stream.decode_quoted_printable_mime(boundary),
            Encoding::None => stream.mime_part(boundary),
        };
        // "Attempt to recover contents of an invalid message": read as raw text.
        if offset_end == usize::MAX {
            if kind != Kind::TextPlain {
                kind = Kind::Other;
            }
            is_text = true;
            let (end, boundary_found) = stream.seek_part_end(state.boundary.as_deref());
            offset_end = end;
            if !boundary_found {
                state.boundary = None;
            }
        }

        if kind != Kind::Message {
            if is_text {
                count_text(counts, limits, offset_body, offset_end)?;
            }
        } else {
            // A forward sent encoded: the parser keeps it decoded and parses it again. Cut
            // short, it would still be parsed: a forward over a limit is cut whole, before
            // its header section, or, when it is the message itself, before its body.
            let whole = if offset_header == 0 {
                offset_body
            } else {
                offset_header
            };
            let cut_whole = |breach: Breach| Breach {
                at: whole,
                limit: breach.limit,
            };
            count_text(counts, limits, offset_body, offset_end).map_err(cut_whole)?;
            if depth != 0 {
                walk(&decoded, depth - 1, parser, limits, counts).map_err(cut_whole)?;
            }
        }
        drop(decoded);

        if state.boundary.is_some() {
            // "Currently processing a MIME part"
            loop {
                if state.kind == Kind::Message {
                    // "Finished processing a nested message, restore parent message"
                    match stack.pop() {
                        Some((mut parent, true)) => {
                            parent.boundary = state.boundary.take();
                            state = parent;
                        }
                        _ => break 'outer,
                    }
                }
                if stream.is_multipart_end() {
                    // "End of MIME part reached": back to the enclosing part.
                    if let Some((parent, _)) = stack.pop() {
                        state = parent;
                        if let Some(boundary) = &state.boundary
                            && stream.seek_next_part_offset(boundary).is_some()
                        {
                            continue;
                        }
                    }
                    break 'outer;
                }
                // The headers of the next part follow.
                break;
            }
        } else if stream.offset() >= data.len() {
            break 'outer;
        }
    }
    Ok(())
}

/// Counts the body `[start, end)` of a text part or encoded forward against
/// `max_text_size`; past it, the cut is where the budget ran out.
fn count_text(
    counts: &mut Counts,
    limits: &Limits,
    start: usize,
    end: usize,
) -> Result<(), Breach> {
    let len = end.saturating_sub(start);
    let budget = limits.max_text_size.saturating_sub(counts.text_bytes);
    if len > budget {
        return Err(Breach {
            at: start + budget,
            limit: Limit::TextSize,
        });
    }
    counts.text_bytes += len;
    Ok(())
}
