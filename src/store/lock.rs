//! One run at a time: the lock `resend-and-import` takes beside the database.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
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
    #[error("cannot take the lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl RunLock {
    pub fn acquire(database: &Path) -> Result<RunLock, LockError> {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        create_private_folder_for(&path).map_err(|source| LockError::Io {
            path: path.clone(),
            source,
        })?;
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| LockError::Io {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(LockError::Busy { path }),
            Err(fs::TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }
}
