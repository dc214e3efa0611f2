//! Walks every MIME part, forwarded messages included, with an explicit stack so hostile
//! nesting costs a bounded loop instead of recursion.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::{Collector, ExtractError, html};

pub struct Headers {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
}

pub fn walk(raw: &[u8], collector: &mut Collector<'_>) -> Result<Headers, ExtractError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(ExtractError::NotAMessage)?;
    let headers = Headers {
        message_id: message.message_id().map(str::to_string),
        subject: message.subject().map(str::to_string),
        from: message
            .from()
            .and_then(|from| from.first())
            .and_then(|addr| addr.address())
            .map(str::to_string),
    };

    let limits = collector.limits;
    // (message, part id, depth, place)
    let mut stack: Vec<(&Message<'_>, u32, usize, String)> = vec![(&message, 0, 0, String::new())];
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
            PartType::Text(text) => collector.scan_text(text, &here),
            PartType::Html(html_body) => {
                collector.note_links(html_body);
                collector.scan_text(&html::html_to_text(html_body), &here);
            }
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                collector.scan_bytes(bytes, &here, 0);
            }
        }
        if part.is_encoding_problem {
            collector.problem(&here, "the part's transfer encoding is broken; read as far as possible");
        }
    }
    Ok(headers)
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
