//! The HTTP/1.1 server: one accept loop, one thread per connection, plain or TLS. Requests
//! are framed with `httparse` and Content-Length (no chunked bodies); keep-alive,
//! pipelining and `Expect: 100-continue` work as a client expects. What a request means is
//! the [`Service`]'s business (the portal's `request::handle`, or the local Secrets
//! Manager's); this module only carries out its [`Outcome`].

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::error::ApiError;
use super::request::{self, record_bad_request};
use super::{MAX_REQUEST_BYTES, Shared, lock};

/// A server's side of the framing: its state, and what each request means.
pub(crate) trait Service: Send + Sync + 'static {
    fn stopping(&self) -> bool;
    /// Open connections by id, so `Outcome::Drop` and a stop can shut them down.
    fn connections(&self) -> &Mutex<HashMap<u64, TcpStream>>;
    fn next_connection(&self) -> u64;
    fn handle(&self, request: &HttpRequest, connection: u64) -> Outcome;
    /// The answer to a request that cannot be framed; the connection closes after it.
    fn bad_request(&self, bad: &BadRequest, connection: u64) -> HttpResponse;
}

impl Service for Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn connections(&self) -> &Mutex<HashMap<u64, TcpStream>> {
        &self.connections
    }

    fn next_connection(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::SeqCst)
    }

    fn handle(&self, request: &HttpRequest, connection: u64) -> Outcome {
        request::handle(self, request, connection)
    }

    fn bad_request(&self, bad: &BadRequest, connection: u64) -> HttpResponse {
        record_bad_request(self, bad, connection);
        HttpResponse::json(
            bad.status,
            &json!({"error": bad.message, "code": "SoftLayer_Exception_WebService_BadRequest"}),
        )
    }
}

const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What to do with a request once it is handled.
pub(crate) enum Outcome {
    Respond(HttpResponse),
    DelayThenRespond(Duration, HttpResponse),
    /// Close the connection without an answer.
    Drop,
}

pub(crate) fn accept_loop<S: Service>(
    shared: Arc<S>,
    listener: TcpListener,
    tls: Option<Arc<native_tls::TlsAcceptor>>,
) {
    for incoming in listener.incoming() {
        if shared.stopping() {
            break;
        }
        let stream = match incoming {
            Ok(stream) => stream,
            Err(_) => {
                // E.g. out of file descriptors: do not spin.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = shared.next_connection();
        if let Ok(clone) = stream.try_clone() {
            lock(shared.connections()).insert(id, clone);
        }
        if shared.stopping() {
            let _ = stream.shutdown(Shutdown::Both);
            break;
        }
        let connection_shared = Arc::clone(&shared);
        let tls = tls.clone();
        let spawned = thread::Builder::new()
            .name(format!("portal-conn-{id}"))
            .spawn(move || {
                let _ = stream.set_nodelay(true);
                let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
                match tls {
                    None => serve_connection(&*connection_shared, stream, id),
                    // A client that refuses the certificate ends the handshake here: the
                    // connection is then simply over, as with the real endpoint.
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream) {
                            serve_connection(&*connection_shared, stream, id);
                        }
                    }
                }
                lock(connection_shared.connections()).remove(&id);
            });
        if spawned.is_err()
            && let Some(stream) = lock(shared.connections()).remove(&id)
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

pub(crate) struct HttpRequest {
    pub(crate) method: String,
    pub(crate) target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    version: u8,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn keep_alive(&self) -> bool {
        let connection = self.header("Connection").unwrap_or("").to_ascii_lowercase();
        let tokens: Vec<&str> = connection.split(',').map(str::trim).collect();
        if self.version >= 1 {
            !tokens.contains(&"close")
        } else {
            tokens.contains(&"keep-alive")
        }
    }
}

pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    /// `SoftLayer-Total-Items` for list results.
    pub(crate) total_items: Option<usize>,
    /// `Location`, for an injected redirect.
    pub(crate) location: Option<String>,
}

impl HttpResponse {
    pub(crate) fn json(status: u16, value: &Value) -> HttpResponse {
        HttpResponse {
            status,
            body: value.to_string().into_bytes(),
            total_items: None,
            location: None,
        }
    }

    pub(crate) fn raw(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            body: body.as_bytes().to_vec(),
            total_items: None,
            location: None,
        }
    }

    pub(crate) fn error(error: &ApiError) -> HttpResponse {
        HttpResponse::json(
            error.status,
            &json!({"error": error.message, "code": error.code}),
        )
    }
}

/// A request that cannot be served: answered with this status, then the connection closes.
pub(crate) struct BadRequest {
    pub(crate) status: u16,
    pub(crate) message: String,
    /// What was read of the request, for the log.
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
}

enum ReadError {
    /// The peer closed, reset, or went idle: nothing to answer.
    Closed,
    Bad(BadRequest),
}

fn bad(status: u16, message: &str) -> ReadError {
    ReadError::Bad(BadRequest {
        status,
        message: message.to_string(),
        method: String::new(),
        target: String::new(),
        headers: Vec::new(),
    })
}

/// Serves one connection, plain or TLS. `Outcome::Drop` shuts the socket down through
/// the clone kept in `shared.connections`.
fn serve_connection<S: Service>(shared: &S, mut stream: impl Read + Write, connection: u64) {
    let mut buffer = Vec::new();
    loop {
        if shared.stopping() {
            break;
        }
        let request = match read_request(&mut stream, &mut buffer) {
            Ok(request) => request,
            Err(ReadError::Closed) => break,
            Err(ReadError::Bad(bad)) => {
                let response = shared.bad_request(&bad, connection);
                let _ = write_response(&mut stream, &response, false);
                break;
            }
        };
        let keep_alive = request.keep_alive();
        match shared.handle(&request, connection) {
            Outcome::Respond(response) => {
                if write_response(&mut stream, &response, keep_alive).is_err() || !keep_alive {
                    break;
                }
            }
            Outcome::DelayThenRespond(delay, response) => {
                let deadline = Instant::now() + delay;
                while Instant::now() < deadline {
                    if shared.stopping() {
                        return;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    thread::sleep(left.min(Duration::from_millis(20)));
                }
                if write_response(&mut stream, &response, keep_alive).is_err() || !keep_alive {
                    break;
                }
            }
            Outcome::Drop => {
                if let Some(socket) = lock(shared.connections()).get(&connection) {
                    let _ = socket.shutdown(Shutdown::Both);
                }
                break;
            }
        }
    }
}

/// Reads one request; bytes after it (a pipelined request) stay in `buffer`.
fn read_request(
    stream: &mut (impl Read + Write),
    buffer: &mut Vec<u8>,
) -> Result<HttpRequest, ReadError> {
    loop {
        if !buffer.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(buffer) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let method = parsed.method.unwrap_or_default().to_string();
                    let target = parsed.path.unwrap_or_default().to_string();
                    let version = parsed.version.unwrap_or(1);
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    buffer.drain(..head_len);
                    return read_body(stream, buffer, method, target, version, headers);
                }
                Ok(httparse::Status::Partial) => {
                    if buffer.len() > MAX_HEAD_BYTES {
                        return Err(bad(431, "Request header fields too large"));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(bad(431, "Too many header fields"));
                }
                Err(e) => return Err(bad(400, &format!("Bad request: {e}"))),
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadError::Closed),
        }
    }
}

fn read_body(
    stream: &mut (impl Read + Write),
    buffer: &mut Vec<u8>,
    method: String,
    target: String,
    version: u8,
    headers: Vec<(String, String)>,
) -> Result<HttpRequest, ReadError> {
    let fail = |status: u16, message: &str| {
        ReadError::Bad(BadRequest {
            status,
            message: message.to_string(),
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
        })
    };
    if headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("Transfer-Encoding"))
    {
        // Bodies must come with Content-Length here; chunked requests are not supported.
        return Err(fail(
            411,
            "Length Required: send the body with Content-Length",
        ));
    }
    let mut length: Option<usize> = None;
    for (_, value) in headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
    {
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail(400, "Bad request: invalid Content-Length"));
        }
        let parsed: usize = match value.parse() {
            Ok(n) => n,
            Err(_) => return Err(fail(413, "Payload too large")),
        };
        if length.is_some_and(|l| l != parsed) {
            return Err(fail(400, "Bad request: conflicting Content-Length headers"));
        }
        length = Some(parsed);
    }
    let length = length.unwrap_or(0);
    if length > MAX_REQUEST_BYTES {
        return Err(fail(413, "Payload too large"));
    }
    let expects_continue = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("Expect") && v.trim().eq_ignore_ascii_case("100-continue")
    });
    if expects_continue && buffer.len() < length {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    while buffer.len() < length {
        let mut chunk = [0u8; 64 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadError::Closed),
        }
    }
    let body: Vec<u8> = buffer.drain(..length).collect();
    Ok(HttpRequest {
        method,
        target,
        version,
        headers,
        body,
    })
}
fn write_response(
    stream: &mut impl Write,
    response: &HttpResponse,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        response.status,
        ::http::StatusCode::from_u16(response.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("Unknown"),
        response.body.len()
    );
    if let Some(total) = response.total_items {
        head.push_str(&format!("SoftLayer-Total-Items: {total}\r\n"));
    }
    if let Some(location) = &response.location {
        head.push_str(&format!("Location: {location}\r\n"));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&response.body);
    stream.write_all(&bytes)?;
    stream.flush()
}
