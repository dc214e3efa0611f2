//! The socket under the IMAP session: TCP with read/write timeouts, wrapped in TLS, with
//! counters of the bytes that crossed it (what a run cost, for `-v` and the benchmark).

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

/// TLS over a counted TCP stream: what the IMAP client talks to.
#[derive(Debug)]
pub struct ImapStream {
    pub tls: native_tls::TlsStream<Counted>,
    /// The read timeout to restore after IDLE, which clears it.
    pub read_timeout: Duration,
}

impl Read for ImapStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tls.read(buf)
    }
}

impl Write for ImapStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
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
