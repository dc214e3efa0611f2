//! What the URL says (§3.1-§3.3): the service, id, method and URL parameters of the path,
//! and the query parameters the API reads (objectMask, objectFilter, resultLimit).

use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::BASE_PATH;
use super::error::ApiError;

pub(crate) struct Route {
    pub(crate) service: String,
    pub(crate) id: Option<i64>,
    pub(crate) method: String,
    /// The method was named in the URL (not implied by the HTTP verb).
    pub(crate) explicit: bool,
    /// Simple parameters given as further path segments (§3.2).
    pub(crate) url_parameters: Vec<String>,
}

/// Parses `/rest/v3.1/{Service}[/{id}][/{method}][/{param}...][.json]`.
pub(crate) fn route(http_method: &str, path: &str) -> Result<Route, ApiError> {
    let Some(rest) = path.strip_prefix(BASE_PATH) else {
        // CHOICE: only /rest/v3.1/ is served; the real host answers other paths with its
        // web server's 404.
        return Err(ApiError::no_service());
    };
    let mut segments: Vec<String> = Vec::new();
    for segment in rest.split('/').filter(|s| !s.is_empty()) {
        let decoded =
            decode_segment(segment).ok_or_else(|| ApiError::bad_request("Bad request"))?;
        segments.push(decoded);
    }
    if let Some(last) = segments.last_mut() {
        if let Some(stripped) = last.strip_suffix(".json") {
            *last = stripped.to_string();
        } else if last.ends_with(".xml") || last.ends_with(".txt") {
            return Err(ApiError::new(
                500,
                "SoftLayer_Exception_NotImplemented",
                "local test portal: only the .json format is served",
            ));
        }
    }
    let mut segments = segments.into_iter();
    let Some(service) = segments.next().filter(|s| !s.is_empty()) else {
        return Err(ApiError::no_service());
    };
    let rest: Vec<String> = segments.collect();
    let (id, after_id) = match rest.first() {
        Some(first) if !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) => {
            let id = first
                .parse::<i64>()
                .map_err(|_| ApiError::not_found(first))?;
            (Some(id), &rest[1..])
        }
        _ => (None, &rest[..]),
    };
    let (method, explicit, url_parameters) = match after_id.split_first() {
        Some((method, parameters)) => (method.clone(), true, parameters.to_vec()),
        // SLDN (§3.1): no method name means getObject for GET, createObject for POST,
        // editObject for PUT and deleteObject for DELETE.
        None => {
            let implied = match http_method {
                "GET" => "getObject",
                "POST" => "createObject",
                "PUT" => "editObject",
                "DELETE" => "deleteObject",
                _ => {
                    return Err(ApiError::new(
                        405,
                        "SoftLayer_Exception_WebService_BadRequest",
                        "Bad request",
                    ));
                }
            };
            (implied.to_string(), false, Vec::new())
        }
    };
    Ok(Route {
        service,
        id,
        method,
        explicit,
        url_parameters,
    })
}

/// Query parameters the API reads (§3.3).
pub(crate) struct Query {
    pub(crate) mask: Option<String>,
    pub(crate) filter: Option<Value>,
    /// (offset, limit)
    pub(crate) limit: Option<(usize, usize)>,
}

pub(crate) fn read_query(pairs: &[(String, String)]) -> Result<Query, ApiError> {
    let mut query = Query {
        mask: None,
        filter: None,
        limit: None,
    };
    for (name, value) in pairs {
        match name.as_str() {
            "objectMask" => {
                if !mask_is_valid(value) {
                    // CHOICE: the real message for an unparsable mask is not documented.
                    return Err(ApiError::public(format!(
                        "Unable to parse object mask: {value}"
                    )));
                }
                query.mask = Some(value.clone());
            }
            "objectFilter" => {
                let filter: Value = serde_json::from_str(value).map_err(|e| {
                    // CHOICE: undocumented message and class.
                    ApiError::public(format!("Unable to parse object filter: {e}"))
                })?;
                if !filter.is_object() {
                    return Err(ApiError::public(
                        "Unable to parse object filter: not an object",
                    ));
                }
                query.filter = Some(filter);
            }
            "resultLimit" => {
                let parse = |s: &str| s.trim().parse::<usize>().ok();
                let limit = match value.split_once(',') {
                    Some((offset, limit)) => parse(offset).zip(parse(limit)),
                    None => parse(value).map(|limit| (0, limit)),
                };
                query.limit = Some(limit.ok_or_else(|| {
                    ApiError::invalid_value(format!(
                        "Invalid resultLimit '{value}': expected offset,limit"
                    ))
                })?);
            }
            _ => {}
        }
    }
    Ok(query)
}

/// An object mask as SLDN writes them (§3.3): `mask[id,status[name]]`,
/// `mask(SoftLayer_Type)[...]`, `mask.id`, or a bare list `id,commonName`.
fn mask_is_valid(mask: &str) -> bool {
    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
        depth: usize,
    }
    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }
        fn ws(&mut self) {
            while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
                self.i += 1;
            }
        }
        fn ident(&mut self) -> bool {
            self.ws();
            match self.peek() {
                Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.i += 1,
                _ => return false,
            }
            while self
                .peek()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                self.i += 1;
            }
            true
        }
        fn item(&mut self) -> bool {
            if !self.ident() {
                return false;
            }
            loop {
                self.ws();
                if self.peek() == Some(b'.') {
                    self.i += 1;
                    if !self.ident() {
                        return false;
                    }
                } else {
                    break;
                }
            }
            self.ws();
            if self.peek() == Some(b'(') {
                self.i += 1;
                if !self.ident() {
                    return false;
                }
                self.ws();
                if self.peek() != Some(b')') {
                    return false;
                }
                self.i += 1;
                self.ws();
            }
            if self.peek() == Some(b'[') {
                self.i += 1;
                self.depth += 1;
                if self.depth > 32 || !self.list(Some(b']')) {
                    return false;
                }
                self.ws();
                if self.peek() != Some(b']') {
                    return false;
                }
                self.i += 1;
                self.depth -= 1;
            }
            true
        }
        fn list(&mut self, close: Option<u8>) -> bool {
            self.ws();
            if close.is_some() && self.peek() == close {
                return true;
            }
            loop {
                if !self.item() {
                    return false;
                }
                self.ws();
                if self.peek() == Some(b',') {
                    self.i += 1;
                } else {
                    return true;
                }
            }
        }
    }
    if mask.trim().is_empty() {
        return false;
    }
    let mut parser = Parser {
        s: mask.as_bytes(),
        i: 0,
        depth: 0,
    };
    let ok = parser.list(None);
    parser.ws();
    ok && parser.i == parser.s.len()
}

/// A query string decoded into pairs, in order ('+' is a space: form encoding, as clients
/// write queries). `None` if it is malformed.
pub(crate) fn parse_query(query: &str) -> Option<Vec<(String, String)>> {
    well_formed(query).then(|| {
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    })
}

/// A path segment, percent-decoded ('+' is itself in a path). `None` if it is malformed.
fn decode_segment(segment: &str) -> Option<String> {
    well_formed(segment).then(|| percent_decode_str(segment).decode_utf8_lossy().into_owned())
}

/// Every '%' starts an escape of two hex digits, and the decoded bytes are UTF-8. The
/// decoders pass a bad escape through as text and replace bad UTF-8; this portal refuses
/// both with 400 instead (CHOICE: what the real web server does is undocumented).
fn well_formed(text: &str) -> bool {
    let bytes = text.as_bytes();
    let escapes = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    escapes && percent_decode_str(text).decode_utf8().is_ok()
}
