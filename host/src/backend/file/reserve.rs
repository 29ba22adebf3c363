//! Room kept back on the disk so that deletes work when it is full.
//!
//! redb writes copy-on-write: even a delete needs free pages, for the new
//! copies of the B-tree pages it changes. On a disk filled by the database
//! itself (a file that only grew) there are none in the file and none on
//! the disk, so without a reserve every delete fails like a store, and an
//! operator cannot free space through the API.
//!
//! So the backend keeps a ballast file beside the database,
//! `<database>.reserve`, of [`DISK_RESERVE`] bytes written out in full
//! (zeros, not a sparse hole: a hole holds no blocks, so deleting it would
//! free nothing). When a commit fails because the disk is full, the writer
//! deletes the ballast: the filesystem then has that much room again, which
//! the deletes that follow (and redb's repair on reopening) use. Growing
//! writes stay refused until the disk has room for the ballast and as much
//! again ([`Reserve::space_returned`]); then the ballast is written again
//! and all writes resume.
//!
//! Why a ballast and not a threshold (refusing stores while the free space
//! is below some figure): redb grows its file in steps, often doubling it,
//! and what a store will take from the disk is not known before its commit,
//! so a threshold cannot stop the last store from taking the last block.
//! Space held in a file is there for certain, and deleting it is one cheap
//! system call that needs no space itself.
//!
//! The ballast holds only zeros, never data. On a filesystem that
//! compresses or deduplicates (ZFS, btrfs with compression) zeros may take
//! no blocks: there the reserve holds nothing back, and deletes on a full
//! disk work only where redb's file has free pages.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How much the ballast holds back: room for the deletes of an operator
/// freeing space (each takes a few 4 KiB pages, which later commits
/// reuse), for redb's repair when it reopens the file, and for the
/// compaction that gives the space deletes freed back to the disk.
pub const DISK_RESERVE: u64 = 4 << 20;

/// The ballast file of one database, and whether it is in place.
#[derive(Debug)]
pub(super) struct Reserve {
    /// `None` when the database has no file of its own to keep a reserve
    /// beside (tests over an in-memory or fault-injecting storage).
    path: Option<PathBuf>,
    size: u64,
    held: bool,
}

/// The ballast's name: the database's with `.reserve` added.
pub fn ballast_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".reserve");
    PathBuf::from(name)
}

impl Reserve {
    /// The reserve of the database at `database`, `size` bytes, not yet
    /// taken (see [`Reserve::take`]).
    pub(super) fn beside(database: &Path, size: u64) -> Self {
        Self {
            path: Some(ballast_path(database)),
            size,
            held: false,
        }
    }

    /// No reserve: a full disk is handled as if the reserve had never been
    /// made.
    pub(super) fn none() -> Self {
        Self {
            path: None,
            size: 0,
            held: false,
        }
    }

    /// Whether there is a reserve at all, held or not.
    pub(super) fn configured(&self) -> bool {
        self.path.is_some() && self.size > 0
    }

    /// Whether the ballast is in place.
    pub(super) fn held(&self) -> bool {
        self.held
    }

    /// How much free space growing writes wait for after a full disk: the
    /// ballast, and as much again, so that they do not fill the disk again
    /// at once (each time costs a reopen that reads the whole file).
    pub(super) fn target(&self) -> u64 {
        self.size.saturating_mul(2)
    }

    /// Writes the ballast if it is not in place (or not whole: a crash
    /// while writing it, or a file someone made sparse).
    pub(super) fn take(&mut self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if self.size == 0 || whole(path, self.size) {
            self.held = self.size > 0;
            return Ok(());
        }
        match write_ballast(path, self.size) {
            Ok(()) => {
                self.held = true;
                Ok(())
            }
            Err(e) => {
                // A partial ballast would be counted as held space that
                // deleting it gives back only in part: none is clearer.
                let _ = std::fs::remove_file(path);
                self.held = false;
                Err(e)
            }
        }
    }

    /// Deletes the ballast, giving its space to the filesystem.
    pub(super) fn release(&mut self) {
        if let Some(path) = &self.path {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::info!(
                    "the disk is full: released the {} reserve {} so that deletes can free space",
                    crate::size::ByteSize(self.size),
                    path.display()
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot remove the reserve {}: {e}", path.display()),
            }
        }
        self.held = false;
    }

    /// The bytes an unprivileged process may still write on the reserve's
    /// filesystem; `None` if that cannot be asked (no reserve, or the call
    /// failed).
    pub(super) fn free_space(&self) -> Option<u64> {
        let dir = self.path.as_deref()?.parent()?;
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        available_bytes(dir).ok()
    }

    /// Whether the disk has room for the ballast and the margin after it
    /// (see [`Reserve::target`]).
    pub(super) fn space_returned(&self) -> bool {
        self.free_space().is_some_and(|free| free >= self.target())
    }
}

/// Whether `path` is a file of at least `size` bytes with blocks behind
/// them all.
fn whole(path: &Path, size: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.len() >= size && m.blocks() * 512 >= size)
}

fn write_ballast(path: &Path, size: u64) -> io::Result<()> {
    let mut file: File = crate::fs::private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    // Blocks a crash could take back would not be held.
    file.sync_all()
}

/// `statvfs(dir)`: the blocks available to unprivileged users, in bytes.
fn available_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `stat` points to a buffer of
    // the type statvfs(3) fills; it is read only after the call succeeded.
    let rc = unsafe { libc::statvfs(c.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ballast_holds_real_blocks_of_zeros_and_goes_when_released() {
        let dir = tempfile_dir("reserve-ballast");
        let db = dir.join("ostore.redb");
        let mut reserve = Reserve::beside(&db, 1 << 20);
        assert!(reserve.configured() && !reserve.held());
        reserve.take().unwrap();
        assert!(reserve.held());
        let ballast = ballast_path(&db);
        assert_eq!(ballast, dir.join("ostore.redb.reserve"));
        assert!(whole(&ballast, 1 << 20), "the ballast is sparse or short");
        let bytes = std::fs::read(&ballast).unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        assert!(bytes.iter().all(|&b| b == 0), "the ballast holds data");
        assert!(reserve.free_space().unwrap() > 0);

        reserve.release();
        assert!(!reserve.held());
        assert!(!ballast.exists());
        // Taken again, as after a full disk had room once more.
        reserve.take().unwrap();
        assert!(reserve.held() && whole(&ballast, 1 << 20));

        // A ballast made sparse (or cut short by a crash) is written again.
        std::fs::remove_file(&ballast).unwrap();
        std::fs::File::create(&ballast)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        assert!(!whole(&ballast, 1 << 20));
        reserve.take().unwrap();
        assert!(whole(&ballast, 1 << 20));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn space_returns_only_with_room_for_the_ballast_and_as_much_again() {
        let dir = tempfile_dir("reserve-room");
        let db = dir.join("ostore.redb");
        let free = Reserve::beside(&db, 1).free_space().unwrap();
        assert!(Reserve::beside(&db, free / 4).space_returned());
        // Room for the ballast alone is not enough (unless the disk's free
        // space doubled meanwhile).
        assert!(!Reserve::beside(&db, free).space_returned());
        assert!(!Reserve::none().space_returned());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ostore-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
