//! Text helpers: HTML to text, download links, order numbers.

/// HTML to text for PEM scanning: tags that break lines become newlines (PEM rendered as
/// HTML has `<br>` at every line end), other tags vanish, entities are decoded last so an
/// encoded `&lt;` never turns into a tag.
pub fn html_to_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            // An unterminated tag: keep the rest as text rather than drop it.
            text.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let tag = after[..close].trim_start_matches('/').to_ascii_lowercase();
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if matches!(
            name.as_str(),
            "br" | "p" | "div" | "tr" | "li" | "pre" | "table" | "h1" | "h2" | "h3" | "td"
        ) {
            text.push('\n');
        }
        rest = &after[close + 1..];
    }
    text.push_str(rest);
    // One copy of the text at a time: the HTML can be megabytes of decoded charset.
    if text.contains('&') {
        text = html_escape::decode_html_entities(&text).into_owned();
    }
    if text.contains('\u{a0}') {
        text = text.replace('\u{a0}', " ");
    }
    text
}

/// Words that mark a link as the way to the certificate in CA mails ("getcert",
/// "download", Sectigo's "collect" page).
const CERTIFICATE_LINK_WORDS: &[&str] = &["cert", "download", "collect", "retrieve", "pickup"];
/// A mail is not a link directory: keep the first few.
const MAX_LINKS: usize = 10;

/// https links that look like a certificate download, in order of appearance.
pub fn certificate_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("https://") {
        let candidate = &rest[start..];
        let end = candidate
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']'))
            .unwrap_or(candidate.len());
        let link = candidate[..end].trim_end_matches(['.', ',', ';']);
        let lower = link.to_ascii_lowercase();
        if CERTIFICATE_LINK_WORDS.iter().any(|w| lower.contains(w))
            && !links.iter().any(|l| l == link)
        {
            links.push(link.to_string());
            if links.len() == MAX_LINKS {
                break;
            }
        }
        rest = &candidate[end..];
    }
    links
}

/// A mail is not an order list either: keep the first few.
const MAX_ORDER_NUMBERS: usize = 10;

/// Order numbers after "order number", "order #", "order no." or "order id"
/// (RapidSSL: "Order number: 1557047799"), at least four digits. Matched without
/// lowercasing a copy of the text, which can be megabytes.
pub fn order_numbers(text: &str) -> Vec<String> {
    let mut numbers = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = find_ignore_case(&bytes[from..], b"order") {
        let at = from + found + b"order".len();
        from = at;
        // "order" is ASCII, so `at` is a char boundary.
        let after = &text[at..];
        let after = strip_prefix_ignore_case(after, " number")
            .or_else(|| strip_prefix_ignore_case(after, " no."))
            .or_else(|| strip_prefix_ignore_case(after, " no"))
            .or_else(|| strip_prefix_ignore_case(after, " id"))
            .or_else(|| after.strip_prefix(" #"))
            .or_else(|| after.strip_prefix('#'));
        let Some(after) = after else { continue };
        let digits: String = after
            .trim_start_matches([' ', ':', '#', '\t'])
            .chars()
            .take_while(char::is_ascii_digit)
            .take(32)
            .collect();
        if digits.len() >= 4 && !numbers.contains(&digits) {
            numbers.push(digits);
            if numbers.len() == MAX_ORDER_NUMBERS {
                break;
            }
        }
    }
    numbers
}

fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.as_bytes().get(..prefix.len())?;
    // An ASCII prefix matched: the rest starts on a char boundary.
    head.eq_ignore_ascii_case(prefix.as_bytes())
        .then(|| &text[prefix.len()..])
}
