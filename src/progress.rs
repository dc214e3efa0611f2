//! The status line on stderr while a run waits: for a fulfillment email ("waiting for the
//! mail of order 101: 2m10s of 15m (IDLE)") or before a portal retry ("portal: HTTP 503,
//! retry 2 of 3 in 4s").
//!
//! A facade, like `log`: the pipeline and the portal client say what they wait for, and
//! know nothing of terminals. `main.rs` turns it on only when stderr is a terminal and
//! neither `--json` nor `-q` is given; otherwise every call is a no-op and nothing but log
//! lines reaches stderr (cron, pipes, tests). The line ticks on its own thread (indicatif's
//! steady tick), so it moves while the caller blocks in IDLE or sleeps. Log lines written
//! while it shows go through [`LogWriter`], which takes the line away, writes, and draws it
//! again.

use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The line on screen, if any, for [`LogWriter`].
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Lets status lines be drawn (stderr is a terminal, no `--json`, no `-q`).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// A status line, shown until it is dropped. Without a terminal it is nothing.
#[must_use = "the status line goes away when this is dropped"]
pub struct Status(Option<ProgressBar>);

impl Drop for Status {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            if let Ok(mut shown) = SHOWN.lock() {
                *shown = None;
            }
            bar.finish_and_clear();
        }
    }
}

/// "`what`: 2m10s of 15m (`how`)", counting from `started` up to `total`.
pub fn waiting(what: &str, how: &str, started: Instant, total: Duration) -> Status {
    let what = what.to_string();
    let how = how.to_string();
    show(move || waiting_text(&what, &how, started.elapsed(), total))
}

/// "portal: `reason`, retry `attempt` of `retries` in 4s", counting down `pause`.
pub fn retrying(reason: &str, attempt: u32, retries: u32, pause: Duration) -> Status {
    let reason = reason.to_string();
    let until = Instant::now() + pause;
    show(move || {
        let left = until.saturating_duration_since(Instant::now());
        retry_text(&reason, attempt, retries, left)
    })
}

fn show(text: impl Fn() -> String + Clone + Send + Sync + 'static) -> Status {
    if !ENABLED.load(Ordering::Relaxed) {
        return Status(None);
    }
    let style = ProgressStyle::with_template("{spinner} {status}")
        .expect("a valid template")
        .with_key(
            "status",
            move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = out.write_str(&text());
            },
        );
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
    bar.enable_steady_tick(Duration::from_millis(250));
    bar.tick();
    if let Ok(mut shown) = SHOWN.lock() {
        *shown = Some(bar.clone());
    }
    Status(Some(bar))
}

/// "waiting for the mail of order 101" / "… of orders 101, 102".
pub fn waiting_for_orders(ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    match ids.len() {
        1 => format!("waiting for the mail of order {}", list[0]),
        _ => format!("waiting for the mail of orders {}", list.join(", ")),
    }
}

/// How the mailbox is watched: "IDLE", or "NOOP every 1m".
pub fn how(idle: bool, poll_interval: Duration) -> String {
    if idle {
        "IDLE".into()
    } else {
        format!("NOOP every {}", short_duration(poll_interval))
    }
}

fn waiting_text(what: &str, how: &str, elapsed: Duration, total: Duration) -> String {
    format!(
        "{what}: {} of {} ({how})",
        short_duration(elapsed.min(total)),
        short_duration(total)
    )
}

fn retry_text(reason: &str, attempt: u32, retries: u32, left: Duration) -> String {
    // Rounded up: "in 0s" would show while the pause still runs.
    let left = Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0));
    format!(
        "portal: {reason}, retry {attempt} of {retries} in {}",
        short_duration(left)
    )
}

/// "0s", "45s", "2m10s", "15m", "1h5m": whole seconds, no spaces.
pub fn short_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut text = String::new();
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if s > 0 || text.is_empty() {
        text.push_str(&format!("{s}s"));
    }
    text
}

/// Where log lines go: stderr, with the status line taken away while one is written.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let shown = SHOWN.lock().ok().and_then(|shown| shown.clone());
        match shown {
            Some(bar) => bar.suspend(|| io::stderr().lock().write_all(buf)),
            None => io::stderr().lock().write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_short() {
        let s = Duration::from_secs;
        assert_eq!(short_duration(s(0)), "0s");
        assert_eq!(short_duration(Duration::from_millis(900)), "0s");
        assert_eq!(short_duration(s(45)), "45s");
        assert_eq!(short_duration(s(130)), "2m10s");
        assert_eq!(short_duration(s(900)), "15m");
        assert_eq!(short_duration(s(3900)), "1h5m");
        assert_eq!(short_duration(s(7201)), "2h1s");
    }

    #[test]
    fn the_lines_say_what_is_waited_for() {
        assert_eq!(
            waiting_text(
                "waiting for the mail of order 101",
                "IDLE",
                Duration::from_secs(130),
                Duration::from_secs(900)
            ),
            "waiting for the mail of order 101: 2m10s of 15m (IDLE)"
        );
        // Never past the end, even when the last pass overruns it.
        assert_eq!(
            waiting_text(
                "w",
                "IDLE",
                Duration::from_secs(901),
                Duration::from_secs(900)
            ),
            "w: 15m of 15m (IDLE)"
        );
        assert_eq!(
            retry_text("HTTP 503", 2, 3, Duration::from_millis(3200)),
            "portal: HTTP 503, retry 2 of 3 in 4s"
        );
        assert_eq!(
            waiting_for_orders(&[101, 102]),
            "waiting for the mail of orders 101, 102"
        );
        assert_eq!(how(false, Duration::from_secs(60)), "NOOP every 1m");
    }

    /// Without `enable` (no terminal, `--json`, `-q`) nothing is drawn.
    #[test]
    fn disabled_is_nothing() {
        let status = waiting("w", "IDLE", Instant::now(), Duration::from_secs(1));
        assert!(status.0.is_none());
        assert!(SHOWN.lock().unwrap().is_none());
    }
}
