//! redb's own integrity check of a database file, for `ostore check` and
//! `ostore repair`.
//!
//! redb's [`Database::check_integrity`] verifies every page's checksum, and
//! *repairs* what fails (by going back to the last commit that verifies).
//! A check must change nothing, so [`check_file`] runs it on a
//! copy-on-write view of the file: reads come from the file, writes stay in
//! memory and are dropped. Only [`repair_file`] lets redb write the file.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use redb::backends::FileBackend as RedbFile;
use redb::{Builder, Database, DatabaseError, ReadableTableMetadata, StorageBackend};

use super::BackendError;

/// What redb's own check says of a database file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileIntegrity {
    /// Every page verifies.
    Clean,
    /// Pages fail to verify; redb can repair the file by going back to
    /// its last commit that verifies (what `ostore repair` does).
    Repairable,
    /// The file cannot be read as a redb database at all.
    Corrupted(String),
}

/// Runs redb's integrity check on the file at `path` without changing it.
/// Fails (as opening the backend would) if a running host holds the file.
pub fn check_file(path: &Path) -> Result<FileIntegrity, BackendError> {
    let mut db = match open_unchanged(path)? {
        Ok(db) => db,
        Err(why) => return Ok(FileIntegrity::Corrupted(why)),
    };
    Ok(match db.check_integrity() {
        Ok(true) => FileIntegrity::Clean,
        Ok(false) => FileIntegrity::Repairable,
        Err(e) => FileIntegrity::Corrupted(e.to_string()),
    })
}

/// How a database file's bytes are used, by redb's own account of its
/// pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileUsage {
    /// The file's length.
    pub file_bytes: u64,
    /// What the file takes on disk: less than its length where redb has
    /// reserved space it has not written yet (a sparse file).
    pub disk_bytes: u64,
    /// The keys and values themselves, as the leaf pages hold them.
    pub stored_bytes: u64,
    /// What the pages spend besides: each entry's offsets in its leaf,
    /// branch pages, and redb's own tables.
    pub overhead_bytes: u64,
    /// Room unused: within pages, whole free pages, and the reserved
    /// space not written yet.
    pub unused_bytes: u64,
    /// Pages that hold keys and values.
    pub leaf_pages: u64,
    /// Pages that lead to them.
    pub branch_pages: u64,
    /// Pages from the root to the deepest leaf.
    pub tree_height: u32,
    pub page_size: u64,
}

/// How the database file at `path` uses its bytes; reads it without
/// changing it. Fails if a running host holds the file, or if redb cannot
/// read it (run [`check_file`] first).
pub fn file_usage(path: &Path) -> Result<FileUsage, BackendError> {
    use std::os::unix::fs::MetadataExt;
    let db = open_unchanged(path)?.map_err(BackendError::Damaged)?;
    let txn = db.begin_write().map_err(BackendError::storage)?;
    let stats = txn.stats().map_err(BackendError::storage)?;
    // The journal's epoch (see `file::journal`) is redb-side bookkeeping,
    // counted with redb's own tables rather than with the records. (Opening
    // the table in this transaction makes it if it is missing, in the
    // view's overlay, and the transaction is dropped.)
    let epoch = txn
        .open_table(super::file::JOURNAL_EPOCH)
        .and_then(|table| Ok(table.stats()?.stored_bytes()))
        .map_err(BackendError::storage)?;
    txn.abort().map_err(BackendError::storage)?;
    let file = std::fs::metadata(path).map_err(|e| open_error(path, e))?;
    Ok(FileUsage {
        file_bytes: file.len(),
        // `st_blocks` counts 512-byte units whatever the file system's
        // block size.
        disk_bytes: file.blocks() * 512,
        stored_bytes: stats.stored_bytes() - epoch,
        overhead_bytes: stats.metadata_bytes() + epoch,
        unused_bytes: stats.fragmented_bytes(),
        leaf_pages: stats.leaf_pages(),
        branch_pages: stats.branch_pages(),
        tree_height: stats.tree_height(),
        page_size: stats.page_size() as u64,
    })
}

/// The file at `path` opened as a database through a copy-on-write view,
/// so that nothing redb does changes it; `Ok(Err(why))` if redb cannot
/// read it as a database.
fn open_unchanged(path: &Path) -> Result<Result<Database, String>, BackendError> {
    // Opened for writing only so that redb can take its exclusive lock
    // (and refuse while a host holds the file): every write goes to the
    // overlay.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| open_error(path, e))?;
    let len = file.metadata().map_err(|e| open_error(path, e))?.len();
    let view = CopyOnWrite {
        file: RedbFile::new(file).map_err(|e| open_error(path, e))?,
        state: Mutex::new(Overlay {
            len,
            file_len: len,
            blocks: HashMap::new(),
        }),
    };
    match check_builder().create_with_backend(view) {
        Ok(db) => Ok(Ok(db)),
        Err(DatabaseError::DatabaseAlreadyOpen) => {
            Err(open_error(path, DatabaseError::DatabaseAlreadyOpen))
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// Runs redb's integrity check on the file at `path`, letting it repair
/// what it can. Returns whether the file was clean.
pub fn repair_file(path: &Path) -> Result<bool, BackendError> {
    let mut db = check_builder()
        .open(path)
        .map_err(|e| open_error(path, e))?;
    db.check_integrity().map_err(|e| open_error(path, e))
}

/// How the check and the repair open a file: with the backend's default
/// cache rather than redb's (1 GiB), which a check reading every page once
/// would fill, for no gain.
fn check_builder() -> Builder {
    let mut builder = Builder::new();
    builder.set_cache_size(super::DEFAULT_CACHE_SIZE.0 as usize);
    builder
}

fn open_error(path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> BackendError {
    BackendError::Open {
        path: path.display().to_string(),
        hint: "",
        source: std::sync::Arc::new(e),
    }
}

/// The unit the overlay copies on write.
const BLOCK: u64 = 4096;

/// A file seen through an in-memory overlay: what redb writes while it
/// checks stays here.
#[derive(Debug)]
struct CopyOnWrite {
    file: RedbFile,
    state: Mutex<Overlay>,
}

#[derive(Debug)]
struct Overlay {
    /// The length redb sees.
    len: u64,
    /// How much of the file is still visible beneath the blocks: a
    /// shrink hides the rest for good (growing again shows zeros).
    file_len: u64,
    /// Blocks written, by index.
    blocks: HashMap<u64, Vec<u8>>,
}

impl CopyOnWrite {
    /// Block `index` as the file shows it.
    fn file_block(&self, file_len: u64, index: u64) -> io::Result<Vec<u8>> {
        let mut block = vec![0; BLOCK as usize];
        let start = index * BLOCK;
        if start < file_len {
            let n = (file_len - start).min(BLOCK) as usize;
            self.file.read(start, &mut block[..n])?;
        }
        Ok(block)
    }
}

impl StorageBackend for CopyOnWrite {
    fn len(&self) -> io::Result<u64> {
        Ok(self.state.lock().expect("overlay lock").len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let state = self.state.lock().expect("overlay lock");
        if offset.saturating_add(out.len() as u64) > state.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end",
            ));
        }
        let mut done = 0;
        while done < out.len() {
            let at = offset + done as u64;
            let (index, within) = (at / BLOCK, (at % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(out.len() - done);
            let block = match state.blocks.get(&index) {
                Some(block) => block.clone(),
                None => self.file_block(state.file_len, index)?,
            };
            out[done..done + n].copy_from_slice(&block[within..within + n]);
            done += n;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock().expect("overlay lock");
        if len < state.len {
            state.file_len = state.file_len.min(len);
            state.blocks.retain(|index, _| index * BLOCK < len);
            let last = len / BLOCK;
            if let Some(block) = state.blocks.get_mut(&last) {
                block[(len % BLOCK) as usize..].fill(0);
            }
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock().expect("overlay lock");
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let (index, within) = (at / BLOCK, (at % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(data.len() - done);
            if !state.blocks.contains_key(&index) {
                let block = self.file_block(state.file_len, index)?;
                state.blocks.insert(index, block);
            }
            let block = state.blocks.get_mut(&index).expect("inserted above");
            block[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        state.len = state.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        self.file.close()
    }

    forward_range_locks!(file);
}
