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
    html_escape::decode_html_entities(&text)
        .replace('\u{a0}', " ")
        .to_string()
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

/// Order numbers after "order number", "order #", "order no." or "order id"
/// (RapidSSL: "Order number: 1557047799"), at least four digits.
pub fn order_numbers(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut numbers = Vec::new();
    for (at, _) in lower.match_indices("order") {
        let after = &lower[at + "order".len()..];
        let after = after
            .strip_prefix(" number")
            .or_else(|| after.strip_prefix(" no."))
            .or_else(|| after.strip_prefix(" no"))
            .or_else(|| after.strip_prefix(" id"))
            .or_else(|| after.strip_prefix(" #"))
            .or_else(|| after.strip_prefix("#"));
        let Some(after) = after else { continue };
        let digits: String = after
            .trim_start_matches([' ', ':', '#', '\t'])
            .chars()
            .take_while(char::is_ascii_digit)
            .take(32)
            .collect();
        if digits.len() >= 4 && !numbers.contains(&digits) {
            numbers.push(digits);
        }
    }
    numbers
}
