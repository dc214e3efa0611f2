//! One run at a time: the lock every command that writes takes beside the database
//! (`import`, `poll`, `resend`, `resend-and-import`), so a `poll` started by hand next to
//! the cron run cannot make both upload the same certificate.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::create_private_folder_for;

/// The kernel lock that keeps two runs apart: `flock` on a file beside the database, taken
/// without waiting and released by the kernel when the process ends, even by SIGKILL
/// (certbot's answer to overlapping cron runs, certbot#4449).
pub struct RunLock {
    _file: fs::File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another fulfill run holds {path}; this one stops (cron may simply retry)")]
    Busy { path: PathBuf },
    #[error(
        "the lock file {path} is a symbolic link; fulfill does not follow links for its lock: \
         remove it"
    )]
    Symlink { path: PathBuf },
    #[error(
        "the lock file {path} belongs to {owner}, not to the user running fulfill; run fulfill \
         as {owner} (e.g. `sudo -u {owner} fulfill …`) or give this user a database of its own"
    )]
    OtherOwner { path: PathBuf, owner: String },
    #[error("cannot take the lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl RunLock {
    pub fn acquire(database: &Path) -> Result<RunLock, LockError> {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let io_error = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        create_private_folder_for(&path).map_err(io_error)?;
        // O_NOFOLLOW: a link planted where the lock goes cannot make us create or truncate
        // a file elsewhere.
        let opened = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        let file = match opened {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(LockError::Symlink { path });
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(match fs::symlink_metadata(&path) {
                    Ok(meta) => other_owner(path, meta.uid()),
                    Err(_) => io_error(e),
                });
            }
            Err(e) => return Err(io_error(e)),
        };
        let owner = file.metadata().map_err(io_error)?.uid();
        // SAFETY: geteuid has no preconditions and cannot fail.
        if owner != unsafe { libc::geteuid() } {
            return Err(other_owner(path, owner));
        }
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(LockError::Busy { path }),
            Err(fs::TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }
}

fn other_owner(path: PathBuf, uid: u32) -> LockError {
    LockError::OtherOwner {
        path,
        owner: user_name(uid).unwrap_or_else(|| format!("uid {uid}")),
    }
}

/// The name `/etc/passwd` gives a user id, as `ls -l` shows it.
fn user_name(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id == uid.to_string()).then(|| name.to_string())
    })
}
