//! The socket under the IMAP session: TCP with read/write timeouts, wrapped in TLS, with
//! counters of the bytes that crossed it (what a run cost, for `-v` and the benchmark), and
//! bounds on what the server may send ([`ResponseLimits`]).
//!
//! The bounds are kept here, on the bytes as they arrive, because the imap crate reads a
//! whole response (every literal in it, and every untagged response before the tagged one)
//! into one buffer before it parses it: a server that says RFC822.SIZE 1 KB and then sends
//! 100 MB, or a line that never ends, would otherwise get all of it into memory.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use imap::extensions::idle::SetReadTimeout;

/// Bytes read and written on one connection.
#[derive(Debug, Default)]
pub struct Traffic {
    pub read: AtomicU64,
    pub written: AtomicU64,
}

impl Traffic {
    pub fn total(&self) -> u64 {
        self.read.load(Ordering::Relaxed) + self.written.load(Ordering::Relaxed)
    }
}

/// A TCP stream that counts what crosses it.
#[derive(Debug)]
pub struct Counted {
    pub tcp: TcpStream,
    pub traffic: Arc<Traffic>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tcp.read(buf)?;
        self.traffic.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tcp.write(buf)?;
        self.traffic.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// The most the server may send, checked as the bytes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// `max_message_size`, which the other limits follow from (and which errors name).
    pub max_message_size: u64,
    /// The largest literal (`{N}` and the N bytes after it).
    pub literal: u64,
    /// The longest line outside literals.
    pub line: u64,
    /// The most bytes in answer to one command: from one write of the client to the next.
    pub per_command: u64,
}

/// A UID SEARCH answer is one line: 4 MiB holds about half a million UIDs.
const MAX_LINE: u64 = 4 * 1024 * 1024;

/// Mailbox names and the like may come as literals too, whatever `max_message_size` is.
const MIN_LITERAL: u64 = 64 * 1024;

impl ResponseLimits {
    /// The limits for a session whose fetches ask for at most `max_message_size + 1`
    /// bytes of a message (one more than allowed, so a longer message is known as such).
    pub fn for_max_message_size(max_message_size: u64) -> ResponseLimits {
        let literal = max_message_size.saturating_add(1).max(MIN_LITERAL);
        ResponseLimits {
            max_message_size,
            literal,
            line: MAX_LINE,
            per_command: literal.saturating_add(2 * MAX_LINE),
        }
    }
}

/// What the server sent beyond a [`ResponseLimits`] bound. The connection is given up:
/// every later read fails with the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooLarge {
    #[error(
        "the server announced {size} bytes in one piece (an IMAP literal), over the {limit} \
         bytes that max_message_size ({max_message_size} bytes) allows; refused before reading it"
    )]
    Literal {
        size: u64,
        limit: u64,
        max_message_size: u64,
    },
    #[error("the server sent a line longer than {limit} bytes; refused")]
    Line { limit: u64 },
    #[error(
        "the server sent more than {limit} bytes in answer to one command, over what \
         max_message_size ({max_message_size} bytes) allows; refused"
    )]
    Response { limit: u64, max_message_size: u64 },
}

/// Follows the server's bytes as IMAP frames them: lines, each of which may end in a
/// literal's announcement `{N}` (or `{N+}`) followed by N bytes of anything.
#[derive(Debug)]
struct Guard {
    limits: ResponseLimits,
    /// Bytes of the current literal still to come.
    literal_left: u64,
    /// Bytes of the current line so far (outside literals).
    line_length: u64,
    /// The last bytes of the current line: enough to read a `{N}` at its end.
    tail: Vec<u8>,
    /// Bytes read since the client last wrote.
    since_write: u64,
    refused: Option<TooLarge>,
}

/// `{` + 20 digits (u64) + `+}` + CR, with room to spare.
const TAIL: usize = 32;

impl Guard {
    fn new(limits: ResponseLimits) -> Guard {
        Guard {
            limits,
            literal_left: 0,
            line_length: 0,
            tail: Vec::with_capacity(2 * TAIL),
            since_write: 0,
            refused: None,
        }
    }

    fn wrote(&mut self) {
        self.since_write = 0;
    }

    fn read(&mut self, mut data: &[u8]) -> Result<(), TooLarge> {
        if let Some(refused) = &self.refused {
            return Err(refused.clone());
        }
        let result = (|| {
            self.since_write = self.since_write.saturating_add(data.len() as u64);
            if self.since_write > self.limits.per_command {
                return Err(TooLarge::Response {
                    limit: self.limits.per_command,
                    max_message_size: self.limits.max_message_size,
                });
            }
            while !data.is_empty() {
                if self.literal_left > 0 {
                    let n = self.literal_left.min(data.len() as u64);
                    self.literal_left -= n;
                    data = &data[n as usize..];
                    continue;
                }
                let end = data.iter().position(|&b| b == b'\n');
                let line = &data[..end.map_or(data.len(), |i| i + 1)];
                self.line_length += line.len() as u64;
                if self.line_length > self.limits.line {
                    return Err(TooLarge::Line {
                        limit: self.limits.line,
                    });
                }
                self.tail
                    .extend_from_slice(&line[line.len().saturating_sub(TAIL)..]);
                if self.tail.len() > TAIL {
                    self.tail.drain(..self.tail.len() - TAIL);
                }
                data = &data[line.len()..];
                if end.is_none() {
                    break;
                }
                let literal = announced_literal(&self.tail);
                self.line_length = 0;
                self.tail.clear();
                if let Some(size) = literal {
                    if size > self.limits.literal {
                        return Err(TooLarge::Literal {
                            size,
                            limit: self.limits.literal,
                            max_message_size: self.limits.max_message_size,
                        });
                    }
                    self.literal_left = size;
                }
            }
            Ok(())
        })();
        if let Err(refused) = &result {
            self.refused = Some(refused.clone());
        }
        result
    }
}

/// N of a line that ends in `{N}` or `{N+}` (then CRLF): the announcement of a literal of
/// N bytes (RFC 3501 §4.3, RFC 7888). A number too large for u64 counts as u64::MAX.
fn announced_literal(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        std::str::from_utf8(digits)
            .ok()?
            .parse()
            .unwrap_or(u64::MAX),
    )
}

/// TLS over a counted TCP stream, with the server's bytes held to [`ResponseLimits`]:
/// what the IMAP client talks to.
#[derive(Debug)]
pub struct ImapStream {
    tls: native_tls::TlsStream<Counted>,
    /// The read timeout to restore after IDLE, which clears it.
    read_timeout: Duration,
    guard: Guard,
}

impl ImapStream {
    pub fn new(
        tls: native_tls::TlsStream<Counted>,
        read_timeout: Duration,
        limits: ResponseLimits,
    ) -> ImapStream {
        ImapStream {
            tls,
            read_timeout,
            guard: Guard::new(limits),
        }
    }
}

impl Read for ImapStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(refused) = &self.guard.refused {
            return Err(io::Error::new(io::ErrorKind::InvalidData, refused.clone()));
        }
        let n = self.tls.read(buf)?;
        self.guard
            .read(&buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(n)
    }
}

impl Write for ImapStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.guard.wrote();
        self.tls.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tls.flush()
    }
}

impl SetReadTimeout for ImapStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> imap::Result<()> {
        // imap's IDLE sets its own timeout and then clears it (None = wait forever); a
        // cron run must never wait forever, so None means "back to our read timeout".
        let timeout = timeout.or(Some(self.read_timeout));
        self.tls
            .get_mut()
            .tcp
            .set_read_timeout(timeout)
            .map_err(imap::Error::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max_message_size: u64) -> Guard {
        Guard::new(ResponseLimits {
            max_message_size,
            literal: max_message_size + 1,
            line: 64,
            per_command: 1000,
        })
    }

    #[test]
    fn literals_are_read_through_and_bounded() {
        assert_eq!(
            announced_literal(b"* 1 FETCH (BODY[]<0> {12}\r\n"),
            Some(12)
        );
        assert_eq!(announced_literal(b"A1 LOGIN {5+}\r\n"), Some(5));
        assert_eq!(announced_literal(b"* OK {x}\r\n"), None);
        assert_eq!(announced_literal(b"* OK done\r\n"), None);
        assert_eq!(
            announced_literal(b"{99999999999999999999999}\r\n"),
            Some(u64::MAX)
        );

        // A literal may hold anything, line ends and "{N}" included, and any length within
        // the limit; the line goes on after it.
        let mut g = guard(100);
        g.read(b"* 1 FETCH (UID 1 BODY[]<0> {101}\r\n").unwrap();
        g.read(&[b'x'; 90]).unwrap();
        g.read(b"{9999}\r\n\r\nx").unwrap();
        g.read(b")\r\nA5 OK done\r\n").unwrap();
        assert_eq!((g.literal_left, g.line_length), (0, 0));

        let mut g = guard(100);
        let error = g.read(b"* 1 FETCH (UID 1 BODY[]<0> {102}\r\n").unwrap_err();
        assert_eq!(
            error,
            TooLarge::Literal {
                size: 102,
                limit: 101,
                max_message_size: 100
            }
        );
        assert!(error.to_string().contains("max_message_size (100 bytes)"));
        // Given up for good.
        assert_eq!(g.read(b"A1 OK\r\n"), Err(error));
    }

    #[test]
    fn lines_and_answers_are_bounded() {
        let mut g = guard(100);
        g.read(&[b'a'; 40]).unwrap();
        assert_eq!(
            g.read(&[b'a'; 40]),
            Err(TooLarge::Line { limit: 64 }),
            "a line over two reads"
        );

        let mut g = guard(100);
        for _ in 0..30 {
            g.read(b"* 1 EXISTS\r\n").unwrap();
        }
        g.wrote();
        for _ in 0..83 {
            g.read(b"* 1 EXISTS\r\n").unwrap();
        }
        assert!(matches!(
            g.read(b"* 1 EXISTS\r\n"),
            Err(TooLarge::Response { limit: 1000, .. })
        ));
    }

    #[test]
    fn limits_follow_max_message_size() {
        let limits = ResponseLimits::for_max_message_size(25 * 1024 * 1024);
        assert_eq!(limits.literal, 25 * 1024 * 1024 + 1);
        assert_eq!(limits.per_command, limits.literal + 2 * MAX_LINE);
        assert_eq!(
            ResponseLimits::for_max_message_size(10).literal,
            MIN_LITERAL
        );
        assert_eq!(
            ResponseLimits::for_max_message_size(u64::MAX).per_command,
            u64::MAX
        );
    }
}
