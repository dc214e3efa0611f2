//! The one way fulfill runs another program (`*_cmd` secret commands, the deploy hook):
//! `sh -c COMMAND` without the secrets fulfill was given in its environment, in a process
//! group of its own, and never waited for longer than a limit, so a stuck child cannot
//! hang a cron slot.
//!
//! Nothing it starts outlives it: when the shell ends, or at the limit, its whole group
//! is killed (SIGKILL), so `sleep 600 & echo pw` gives "pw" at once and leaves no `sleep`
//! behind. Its output is read while it runs, within the same limit: a background process
//! that keeps a pipe open cannot hold the read past it. A process that leaves the group
//! on purpose (`setsid`) is beyond reach, but it cannot delay the run either.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::secret::SECRET_ENV_VARS;

/// How often a running child is looked at between pipe events.
const TICK: Duration = Duration::from_millis(20);

/// After the shell has ended and its group is killed, what it wrote is already in the
/// pipes; this long is allowed for the rest to arrive.
const DRAIN: Duration = Duration::from_millis(500);

/// The process groups of the children running now, for [`kill_running`].
static RUNNING: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

/// `sh -c COMMAND`, its environment cleared of [`SECRET_ENV_VARS`] (one secret's command,
/// or the hook, never sees another secret given in the environment), as the leader of a
/// new process group. Run it with [`run`].
pub fn shell(command: &str) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(command);
    for name in SECRET_ENV_VARS {
        sh.env_remove(name);
    }
    sh.process_group(0);
    sh
}

/// How a child ended.
#[derive(Debug)]
pub enum Ended {
    Exited(ExitStatus),
    /// It ran past its limit and its group was killed.
    Killed,
}

/// A finished child: how it ended, and what it wrote to the pipes the command set up.
#[derive(Debug)]
pub struct Finished {
    pub ended: Ended,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Starts `command` (from [`shell`], with its stdio set by the caller), writes `input` to
/// its stdin if that is piped, keeps up to `max_output` bytes of each piped output (the
/// rest is read and dropped, so a chatty child never stalls on a full pipe), and waits
/// for it: all within `limit`. When the shell ends its group is killed; at the limit the
/// group is killed and the child reaped. Either way no process of the group is left.
pub fn run(
    command: &mut Command,
    input: &[u8],
    limit: Duration,
    max_output: usize,
) -> io::Result<Finished> {
    let deadline = Instant::now() + limit;
    let mut group = Group::spawn(command)?;
    let mut pipes = Pipes {
        stdin: group.child.stdin.take().map(|p| (p, input)),
        stdout: group
            .child
            .stdout
            .take()
            .map(|p| Output::new(p, max_output)),
        stderr: group
            .child
            .stderr
            .take()
            .map(|p| Output::new(p, max_output)),
    };
    pipes.set_nonblocking()?;
    let ended = loop {
        if group.has_exited()? {
            break Ended::Exited(group.finish()?);
        }
        let now = Instant::now();
        if now >= deadline {
            group.finish()?;
            break Ended::Killed;
        }
        pipes.pump((deadline - now).min(TICK))?;
    };
    pipes.stdin = None;
    let drained = deadline.min(Instant::now() + DRAIN);
    while pipes.reading() {
        let now = Instant::now();
        if now >= drained {
            break;
        }
        pipes.pump((drained - now).min(TICK))?;
    }
    Ok(Finished {
        ended,
        stdout: pipes.stdout.map(|o| o.kept).unwrap_or_default(),
        stderr: pipes.stderr.map(|o| o.kept).unwrap_or_default(),
    })
}

/// Kills the groups of the children running now: the watchdog calls this before it ends
/// the process, so no child outlives the run.
pub fn kill_running() {
    let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    for pgid in running.iter() {
        kill_group(*pgid);
    }
}

fn kill_group(pgid: libc::pid_t) {
    // SAFETY: killpg takes plain integers. The group's leader is not reaped yet (see
    // `Group`), so its id cannot have been reused for another group.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// A child leading its own process group, registered in [`RUNNING`] while it lives. The
/// group is always killed before the leader is reaped: a zombie leader keeps the group's
/// id from being reused, so the kill cannot reach anyone else.
struct Group {
    child: Child,
    pgid: libc::pid_t,
    reaped: bool,
}

impl Group {
    fn spawn(command: &mut Command) -> io::Result<Group> {
        let child = command.spawn()?;
        let pgid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(pgid);
        Ok(Group {
            child,
            pgid,
            reaped: false,
        })
    }

    /// Whether the leader has ended, without reaping it (`WNOWAIT`).
    fn has_exited(&self) -> io::Result<bool> {
        // SAFETY: an all-zero siginfo_t is valid; waitid writes into it and nothing else.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: `info` is a valid, writable siginfo_t.
        let rc = unsafe { libc::waitid(libc::P_PID, self.pgid as libc::id_t, &mut info, flags) };
        if rc == -1 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                ErrorKind::Interrupted => Ok(false),
                _ => Err(error),
            };
        }
        // With WNOHANG and nothing to report, the zeroed siginfo stays zero.
        Ok(info.si_signo != 0)
    }

    /// Kills the group, then reaps the leader.
    fn finish(&mut self) -> io::Result<ExitStatus> {
        kill_group(self.pgid);
        let status = self.child.wait()?;
        self.reaped = true;
        Ok(status)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.reaped {
            // An error on the way: nothing of the group may stay behind.
            let _ = self.finish();
        }
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|pgid| *pgid != self.pgid);
    }
}

/// A piped output and what is kept of it.
struct Output<P> {
    pipe: Option<P>,
    kept: Vec<u8>,
    max: usize,
}

impl<P: Read + AsRawFd> Output<P> {
    fn new(pipe: P, max: usize) -> Output<P> {
        Output {
            pipe: Some(pipe),
            kept: Vec::new(),
            max,
        }
    }

    /// Reads what is there; closes the pipe at its end.
    fn read_available(&mut self) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => {
                    self.pipe = None;
                    return;
                }
                Ok(n) => {
                    let room = self.max.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.pipe = None;
                    return;
                }
            }
        }
    }
}

/// The child's pipes, all non-blocking and served by one `poll`.
struct Pipes<'a> {
    stdin: Option<(ChildStdin, &'a [u8])>,
    stdout: Option<Output<ChildStdout>>,
    stderr: Option<Output<ChildStderr>>,
}

impl Pipes<'_> {
    fn set_nonblocking(&self) -> io::Result<()> {
        let fds = [
            self.stdin.as_ref().map(|(p, _)| p.as_raw_fd()),
            self.stdout
                .as_ref()
                .and_then(|o| o.pipe.as_ref())
                .map(AsRawFd::as_raw_fd),
            self.stderr
                .as_ref()
                .and_then(|o| o.pipe.as_ref())
                .map(AsRawFd::as_raw_fd),
        ];
        for fd in fds.into_iter().flatten() {
            // SAFETY: fcntl on a file descriptor this process owns.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            if flags == -1
                || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } == -1
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    fn reading(&self) -> bool {
        self.stdout.as_ref().is_some_and(|o| o.pipe.is_some())
            || self.stderr.as_ref().is_some_and(|o| o.pipe.is_some())
    }

    /// Waits up to `timeout` for a pipe to be ready, then moves what can be moved.
    fn pump(&mut self, timeout: Duration) -> io::Result<()> {
        if self.stdin.as_ref().is_some_and(|(_, rest)| rest.is_empty()) {
            // All written: closing it is the child's end of input.
            self.stdin = None;
        }
        let mut fds = Vec::with_capacity(3);
        if let Some((pipe, _)) = &self.stdin {
            fds.push(pollfd(pipe.as_raw_fd(), libc::POLLOUT));
        }
        if let Some(pipe) = self.stdout.as_ref().and_then(|o| o.pipe.as_ref()) {
            fds.push(pollfd(pipe.as_raw_fd(), libc::POLLIN));
        }
        if let Some(pipe) = self.stderr.as_ref().and_then(|o| o.pipe.as_ref()) {
            fds.push(pollfd(pipe.as_raw_fd(), libc::POLLIN));
        }
        if fds.is_empty() {
            std::thread::sleep(timeout);
            return Ok(());
        }
        let millis = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        if ready == -1 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                ErrorKind::Interrupted => Ok(()),
                _ => Err(error),
            };
        }
        if ready == 0 {
            return Ok(());
        }
        self.write_stdin();
        if let Some(output) = self.stdout.as_mut() {
            output.read_available();
        }
        if let Some(output) = self.stderr.as_mut() {
            output.read_available();
        }
        Ok(())
    }

    /// Writes what the pipe takes now. A child that stops reading (or ends) is no error:
    /// a hook need not read its input.
    fn write_stdin(&mut self) {
        let Some((pipe, rest)) = self.stdin.as_mut() else {
            return;
        };
        loop {
            if rest.is_empty() {
                self.stdin = None;
                return;
            }
            match pipe.write(rest) {
                Ok(n) => *rest = &rest[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.stdin = None;
                    return;
                }
            }
        }
    }
}

fn pollfd(fd: libc::c_int, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// For the tests here and in `config::credentials`.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::{Duration, Instant};

    /// Whether process group `pgid` is gone within a few seconds (a SIGKILL takes a moment
    /// to land): `kill(-pgid, 0)` finds nobody, or `/proc` shows only zombies in it (killed
    /// processes that their new parent has not reaped yet).
    pub(crate) fn group_ends(pgid: libc::pid_t) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // SAFETY: signal 0 only checks for existence.
            let rc = unsafe { libc::kill(-pgid, 0) };
            if rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                return true;
            }
            if live_members(pgid) == Some(0) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Processes of the group that are not zombies, from `/proc/PID/stat`
    /// ("pid (comm) state ppid pgrp ..."); `None` without `/proc`.
    fn live_members(pgid: libc::pid_t) -> Option<usize> {
        let mut count = 0;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some((_, after)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = after.split_whitespace().collect();
            if fields.get(2) == Some(&pgid.to_string().as_str()) && fields.first() != Some(&"Z") {
                count += 1;
            }
        }
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use super::*;

    fn piped(command: &str) -> Command {
        let mut sh = shell(command);
        sh.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        sh
    }

    fn group_alive(pgid: libc::pid_t) -> bool {
        !testing::group_ends(pgid)
    }

    /// The pid the shell printed on its first line: with `process_group(0)` it is also
    /// the group's id.
    fn pgid_of(output: &[u8]) -> libc::pid_t {
        String::from_utf8_lossy(output)
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("the shell printed its pid first")
    }

    #[test]
    fn output_and_input_go_through_the_pipes() {
        let finished = run(
            &mut piped("cat; echo err >&2"),
            b"some input\n",
            Duration::from_secs(10),
            1024,
        )
        .unwrap();
        assert!(matches!(finished.ended, Ended::Exited(s) if s.success()));
        assert_eq!(finished.stdout, b"some input\n");
        assert_eq!(finished.stderr, b"err\n");
    }

    #[test]
    fn a_background_child_holding_the_pipe_is_killed_when_the_shell_ends() {
        let started = Instant::now();
        let finished = run(
            &mut piped("echo $$; sleep 600 & echo pw"),
            b"",
            Duration::from_secs(30),
            1024,
        )
        .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "returned when the shell ended, not at the limit: {:?}",
            started.elapsed()
        );
        assert!(matches!(finished.ended, Ended::Exited(s) if s.success()));
        let pgid = pgid_of(&finished.stdout);
        assert_eq!(
            String::from_utf8_lossy(&finished.stdout).lines().nth(1),
            Some("pw")
        );
        assert!(!group_alive(pgid), "the background sleep was killed");
    }

    #[test]
    fn at_the_limit_the_whole_group_is_killed() {
        let started = Instant::now();
        let finished = run(
            &mut piped("echo $$; sleep 600 & sleep 600"),
            b"",
            Duration::from_millis(500),
            1024,
        )
        .unwrap();
        let took = started.elapsed();
        assert!(matches!(finished.ended, Ended::Killed));
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(!group_alive(pgid_of(&finished.stdout)));
    }

    #[test]
    fn a_child_that_left_the_group_cannot_hold_the_read_past_the_limit() {
        // `setsid` puts the sleep out of reach; it holds stdout open, the shell never ends.
        let started = Instant::now();
        let finished = run(
            &mut piped("setsid sleep 3 & sleep 600"),
            b"",
            Duration::from_millis(500),
            1024,
        )
        .unwrap();
        assert!(matches!(finished.ended, Ended::Killed));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_child_that_reads_no_input_does_not_block_the_writer() {
        let finished = run(
            &mut piped("exit 3"),
            &vec![b'x'; 1 << 20],
            Duration::from_secs(10),
            1024,
        )
        .unwrap();
        assert!(matches!(finished.ended, Ended::Exited(s) if s.code() == Some(3)));
    }

    #[test]
    fn output_beyond_the_cap_is_read_and_dropped() {
        let finished = run(
            &mut piped("head -c 1000000 /dev/zero"),
            b"",
            Duration::from_secs(10),
            100,
        )
        .unwrap();
        assert!(matches!(finished.ended, Ended::Exited(s) if s.success()));
        assert_eq!(finished.stdout.len(), 100);
    }
}
