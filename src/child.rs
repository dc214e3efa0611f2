//! The one way fulfill runs another program (`*_cmd` secret commands, the deploy hook):
//! `sh -c COMMAND` without the secrets fulfill was given in its environment, and never
//! waited for longer than a limit, so a stuck child cannot hang a cron slot.

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::secret::SECRET_ENV_VARS;

/// `sh -c COMMAND`, its environment cleared of [`SECRET_ENV_VARS`]: one secret's
/// command, or the hook, never sees another secret given in the environment.
pub fn shell(command: &str) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(command);
    for name in SECRET_ENV_VARS {
        sh.env_remove(name);
    }
    sh
}

/// How a child ended.
#[derive(Debug)]
pub enum Ended {
    Exited(ExitStatus),
    /// It ran past its limit and was killed.
    Killed,
}

/// Waits for the child, killing it (and reaping it) once `limit` has passed.
pub fn wait_at_most(child: &mut Child, limit: Duration) -> io::Result<Ended> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Ended::Exited(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Ended::Killed);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
