//! Walks every MIME part, forwarded messages included, with an explicit stack so hostile
//! nesting costs a bounded loop instead of recursion.

use std::borrow::Cow;

use mail_parser::{Encoding, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::{Collector, ExtractError, html, parts, pem, shape, zip};

pub struct Headers {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
}

pub fn walk(raw: &[u8], collector: &mut Collector<'_>) -> Result<Headers, ExtractError> {
    let parser = MessageParser::default();
    // The parser builds its whole tree before the walk below can stop at a limit: give it
    // only the part of the message whose tree stays within the limits.
    let raw = match shape::find_cut(raw, &parser, collector.limits) {
        Some(cut) => {
            collector.problem("message", cut.what);
            &raw[..cut.at]
        }
        None => raw,
    };
    let message = parser.parse(raw).ok_or(ExtractError::NotAMessage)?;
    let headers = Headers {
        message_id: message.message_id().map(str::to_string),
        subject: message.subject().map(str::to_string),
        from: message
            .from()
            .and_then(|from| from.first())
            .and_then(|addr| addr.address())
            .map(str::to_string),
    };
    walk_parts(&message, collector);
    drop_flat(message);
    Ok(headers)
}

/// Visits the parts of `message` and of the messages forwarded in it, in mail order, up
/// to `max_parts` parts and `max_mime_depth` levels.
fn walk_parts(message: &Message<'_>, collector: &mut Collector<'_>) {
    let limits = collector.limits;
    // (message, part id, depth, place)
    let mut stack: Vec<(&Message<'_>, u32, usize, String)> = vec![(message, 0, 0, String::new())];
    let mut parts_seen = 0;
    while let Some((msg, id, depth, place)) = stack.pop() {
        let Some(part) = msg.part(id) else { continue };
        parts_seen += 1;
        if parts_seen > limits.max_parts {
            collector.problem(
                "message",
                format!(
                    "more than {} MIME parts (max_parts); the rest were not read",
                    limits.max_parts
                ),
            );
            break;
        }
        let here = describe(&place, id, part);
        match &part.body {
            PartType::Multipart(children) => {
                if depth >= limits.max_mime_depth {
                    collector.problem(
                        &here,
                        format!(
                            "MIME parts nested more than {} deep (max_mime_depth); deeper parts not read",
                            limits.max_mime_depth
                        ),
                    );
                    continue;
                }
                // Reversed so that parts are visited, and certificates reported, in mail order.
                for &child in children.iter().rev() {
                    stack.push((msg, child, depth + 1, place.clone()));
                }
            }
            PartType::Message(inner) => {
                if depth >= limits.max_mime_depth {
                    collector.problem(
                        &here,
                        format!(
                            "forwarded messages nested more than {} deep (max_mime_depth); not read",
                            limits.max_mime_depth
                        ),
                    );
                    continue;
                }
                stack.push((inner, 0, depth + 1, format!("{here} > ")));
            }
            _ => scan_content(collector, msg, part, &here),
        }
        if part.is_encoding_problem {
            collector.problem(
                &here,
                "the part's transfer encoding is broken; read as far as possible",
            );
        }
    }
}

/// Finds certificates, keys, CSRs and links in a part that holds content, not other parts.
fn scan_content(
    collector: &mut Collector<'_>,
    msg: &Message<'_>,
    part: &MessagePart<'_>,
    here: &str,
) {
    match &part.body {
        PartType::Text(text) => {
            collector.scan_text(text, here);
            // A `.txt` or `.cer` sent as text/* can hold DER or a zip: the charset
            // decoding has mangled those bytes, so read them again from the raw body.
            // DER is told by its header (a SEQUENCE of hundreds of bytes), which no
            // prose starts with.
            if !text.contains("-----BEGIN ")
                && let Some(raw) = decoded_body(msg, part)
                && (zip::is_zip(&raw)
                    || (raw.first() == Some(&0x30) && matches!(raw.get(1), Some(0x81..=0x84))))
            {
                collector.scan_bytes(&raw, here, 0);
            }
        }
        PartType::Html(html_body) => {
            // Links sit in href attributes, entity-encoded (`&amp;` between parameters).
            collector.note_links(&html_escape::decode_html_entities(html_body));
            collector.scan_text(&html::html_to_text(html_body), here);
        }
        // Only the attachments that the mailbox would fetch of this mail (`parts.rs`):
        // read whole or part by part, a mail gives the same certificates.
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) if may_hold_certificate(part) => {
            collector.scan_bytes(bytes, here, 0);
        }
        PartType::Binary(_) | PartType::InlineBinary(_) => {}
        // walk_parts visits the parts these hold.
        PartType::Multipart(_) | PartType::Message(_) => {}
    }
}

/// Whether a part's type or file name is on the list of what can hold a certificate. A
/// part without a Content-Type is text (RFC 2045 §5.2).
fn may_hold_certificate(part: &MessagePart<'_>) -> bool {
    let (ty, subtype) = part
        .content_type()
        .map_or(("text", ""), |ct| (ct.ctype(), ct.subtype().unwrap_or("")));
    parts::may_hold_certificate(ty, subtype, part.attachment_name())
}

/// Drops a parsed message without recursion. mail-parser nests a forwarded message inside
/// its part, so the default drop recurses once per level, and 10 000 nested forwards
/// overflow the stack after the walk itself stopped at max_mime_depth.
fn drop_flat(message: Message<'_>) {
    let mut pending = vec![message];
    while let Some(mut message) = pending.pop() {
        for part in &mut message.parts {
            if let PartType::Message(inner) = std::mem::take(&mut part.body) {
                pending.push(inner);
            }
        }
    }
}

/// The body of a part with only its transfer encoding undone: the bytes as sent, before
/// any charset conversion. Borrowed when there was no transfer encoding.
fn decoded_body<'m>(msg: &'m Message<'_>, part: &MessagePart<'_>) -> Option<Cow<'m, [u8]>> {
    let raw = msg
        .raw_message
        .get(part.raw_body_offset() as usize..part.raw_end_offset() as usize)?;
    match part.encoding {
        Encoding::Base64 => pem::decode_base64(raw).map(Cow::Owned),
        Encoding::QuotedPrintable => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(raw).map(Cow::Owned)
        }
        Encoding::None => Some(Cow::Borrowed(raw)),
    }
}

/// "part 3 (application/zip 'cert.zip')", prefixed by the forwarded message it sits in.
fn describe(place: &str, id: u32, part: &mail_parser::MessagePart<'_>) -> String {
    let mime = part
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        })
        .unwrap_or_else(|| "text/plain".to_string());
    match part.attachment_name() {
        Some(name) => format!("{place}part {} ({mime} '{name}')", id + 1),
        None => format!("{place}part {} ({mime})", id + 1),
    }
}
