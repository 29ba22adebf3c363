//! The journal: where a lone write's group becomes durable, so that redb's
//! commit of it needs no fsync of its own.
//!
//! redb makes a commit durable by writing every page the commit changed and
//! then fsyncing the file: most of a lone write's time (0.24 ms of 0.30 at
//! 2 M keys, docs/BENCHMARKS.md), more as the tree deepens. Appending the
//! group's own writes to a file and fdatasyncing it costs less. So for a
//! small group (see the writer's `JOURNALED_WRITES`) the writer appends its
//! writes here and fdatasyncs them, then commits redb with
//! [`Durability::None`] (readers see it at once; redb keeps its pages in
//! memory and writes nothing), and only then acknowledges the group. A
//! *checkpoint* commits redb durably (each page that the groups since the
//! last one changed is written once) and then empties the journal: once it
//! holds [`CHECKPOINT_BYTES`], and once the oldest group in it is
//! [`CHECKPOINT_INTERVAL`] old. A group that redb commits durably itself
//! makes the journal's groups durable with it, and so ends the journal's
//! epoch as a checkpoint does (below).
//!
//! Opening the database (at start, and again after an I/O error, which
//! rolls redb back to its last durable commit) *replays* the journal: its
//! groups are applied in order and made durable. With none to apply, the
//! journal takes up the epoch the database holds, and the database is not
//! written.
//!
//! # Epochs
//!
//! Every durable commit of redb (a checkpoint, a group redb commits
//! durably itself, a replay) writes a fresh random *epoch* into the
//! database, in its own table, in the same transaction; every record of
//! the journal carries the epoch that redb held durably when it was
//! appended, and after each durable commit the journal starts again at its
//! first byte under the new epoch. A replay applies only the records of
//! the epoch the database holds. So the journal never applies a group that
//! a durable commit already holds, nor one over writes made after it: a
//! journal left behind by a checkpoint whose emptying a crash cut off, one
//! beside a database file restored from a backup, or a record whose append
//! failed and which a durable commit followed, all belong to an earlier
//! epoch and are ignored. Emptying the journal needs no fsync of its own.
//!
//! The journal holds what redb holds, byte for byte: record keys (tags,
//! never names) and sealed records. Nothing in it is plaintext.
//!
//! # Format
//!
//! A sequence of records, one per group, each:
//!
//! | bytes | what |
//! |---|---|
//! | 4 | length of the payload (little-endian) |
//! | 8 | the epoch |
//! | 8 | sequence number: 0 for the epoch's first record, then one more each |
//! | 4 | CRC-32 of the epoch, the sequence number and the payload |
//! | length | the payload: for each write, its key's length (4 bytes) and key, then 0 for a removal, or 1, the value's length (4 bytes) and the value |
//!
//! A replay stops at the first record that is cut short, fails its CRC, is
//! of another epoch or is out of sequence: the tail of an append that a
//! crash interrupted (never acknowledged: an append is acknowledged once
//! its fdatasync returns), or what is left of an earlier epoch.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase, TableDefinition, WriteTransaction};

use super::{BackendError, RECORDS, storage};
use crate::backend::Write;

/// The journal's size past which a checkpoint empties it: about what a
/// start after a crash applies at most, and what the journal takes of the
/// disk beside the database (a group that passes it is still appended
/// whole).
pub(super) const CHECKPOINT_BYTES: u64 = 1 << 20;

/// How long a group waits in the journal at most before a checkpoint makes
/// redb hold it durably. Between checkpoints redb cannot reuse the pages
/// its commits free, so the file grows by what the groups of one interval
/// touch; and a checkpoint writes them all while writers wait. A quarter
/// of a second gave lone writes most of the gain (docs/BENCHMARKS.md, "The
/// journal").
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Where the database keeps the epoch of its last durable commit.
pub(crate) const EPOCH: TableDefinition<&str, u64> = TableDefinition::new("journal");
const EPOCH_KEY: &str = "epoch";

/// A record's header: the payload's length, the epoch, the sequence
/// number, the CRC.
const HEADER: usize = 4 + 8 + 8 + 4;

const REMOVE: u8 = 0;
const PUT: u8 = 1;

/// The journal file beside a database, and where the next record goes.
pub(super) struct Journal {
    file: JournalFile,
    path: PathBuf,
    /// The epoch of the database's last durable commit, which the records
    /// appended now carry (0 until the first replay stamps one).
    epoch: u64,
    /// The bytes of this epoch's records.
    len: u64,
    /// The sequence number of the next record.
    next: u64,
    /// Where the last record appended begins.
    last: u64,
    /// When the oldest record of this epoch was appended.
    oldest: Option<Instant>,
    /// A record being encoded, kept to spare an allocation per group.
    buffer: Vec<u8>,
}

/// The journal's path beside the database at `database`.
pub fn journal_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

impl Journal {
    /// Opens (or creates, readable by its owner only) the journal at
    /// `path`. What it holds is applied by [`replay`](Self::replay).
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        let created = !path.exists();
        crate::fs::make_private(path)?;
        let file = File::options().read(true).write(true).open(path)?;
        if created && let Some(dir) = path.parent() {
            // The new file's name must survive a crash too.
            File::open(dir).and_then(|d| d.sync_all())?;
        }
        Ok(Self {
            file: JournalFile {
                file,
                #[cfg(test)]
                faults: None,
            },
            path: path.to_path_buf(),
            epoch: 0,
            len: 0,
            next: 0,
            last: 0,
            oldest: None,
            buffer: Vec::new(),
        })
    }

    /// The journal at `path` whose writes, fsyncs and cuts obey `faults`,
    /// as redb's file does under
    /// [`FaultyStorage`](crate::backend::fault::FaultyStorage).
    #[cfg(test)]
    pub(super) fn open_faulty(
        path: &Path,
        faults: std::sync::Arc<crate::backend::fault::Faults>,
    ) -> io::Result<Self> {
        let mut journal = Self::open(path)?;
        journal.file.faults = Some(faults);
        Ok(journal)
    }

    /// Where the journal is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// When the next checkpoint is due, if a group is waiting for one.
    pub(super) fn checkpoint_at(&self) -> Option<Instant> {
        self.oldest.map(|oldest| oldest + CHECKPOINT_INTERVAL)
    }

    /// Whether a checkpoint is due now.
    pub(super) fn checkpoint_due(&self, now: Instant) -> bool {
        self.len >= CHECKPOINT_BYTES || self.checkpoint_at().is_some_and(|at| now >= at)
    }

    /// Appends `writes` as one record and makes it durable. On an error
    /// the journal is cut back to where it was, and a checkpoint is made
    /// due: a record that the cut may have left behind is replayed only if
    /// the host stops before any durable commit (which begins a new
    /// epoch), as a write reported failed may land after a failed fsync.
    pub(super) fn append<'a>(&mut self, writes: impl Iterator<Item = &'a Write>) -> io::Result<()> {
        let mut record = std::mem::take(&mut self.buffer);
        record.clear();
        record.resize(HEADER, 0);
        for write in writes {
            put_bytes(&mut record, &write.key)?;
            match &write.value {
                Some(value) => {
                    record.push(PUT);
                    put_bytes(&mut record, value)?;
                }
                None => record.push(REMOVE),
            }
        }
        let payload = u32::try_from(record.len() - HEADER).map_err(|_| too_long())?;
        record[..4].copy_from_slice(&payload.to_le_bytes());
        record[4..12].copy_from_slice(&self.epoch.to_le_bytes());
        record[12..20].copy_from_slice(&self.next.to_le_bytes());
        let crc = crc(&record[4..20], &record[HEADER..]);
        record[20..24].copy_from_slice(&crc.to_le_bytes());
        let written = self
            .file
            .write_all_at(&record, self.len)
            .and_then(|()| self.file.sync_data());
        self.buffer = record;
        if let Err(e) = written {
            let _ = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data());
            self.oldest.get_or_insert_with(Instant::now);
            return Err(e);
        }
        self.last = self.len;
        self.len += self.buffer.len() as u64;
        self.next += 1;
        self.oldest.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Takes back the record just appended, whose group redb then failed
    /// to commit: it must not be replayed. Best effort, as the failure
    /// that makes it needed may fail it too.
    pub(super) fn retract(&mut self) {
        if self.next == 0 {
            return;
        }
        if let Err(e) = self.file.set_len(self.last) {
            tracing::warn!(
                "{}: cannot take back a group that was not committed ({e}); \
                 it will be applied when the journal is next replayed",
                self.path.display()
            );
            return;
        }
        // The file is cut now, in the page cache at least: the next record
        // goes where this one began, whether or not the cut is durable yet.
        self.len = self.last;
        self.next -= 1;
        if self.next == 0 {
            self.oldest = None;
        }
        if let Err(e) = self.file.sync_data() {
            tracing::warn!(
                "{}: a group that was not committed may yet be applied, if the host stops \
                 before the journal is next emptied ({e})",
                self.path.display()
            );
        }
    }

    /// Commits `txn` durably with a fresh epoch written into it, then
    /// [`begin`](Self::begin)s the journal anew under that epoch: every
    /// group the journal holds is then in redb's durable state. Every
    /// durable commit of a database with a journal goes through here.
    pub(super) fn commit(&mut self, mut txn: WriteTransaction) -> Result<(), BackendError> {
        txn.set_durability(Durability::Immediate).map_err(storage)?;
        let epoch = u64::from_le_bytes(crate::encryption::random_array());
        txn.open_table(EPOCH)
            .and_then(|mut table| table.insert(EPOCH_KEY, epoch).map(drop).map_err(Into::into))
            .map_err(storage)?;
        txn.commit().map_err(storage)?;
        self.begin(epoch);
        Ok(())
    }

    /// Starts the journal again at its first byte under `epoch`, the
    /// database's durable one: the records before it are all held durably
    /// by then. Cutting the file is only to give its space
    /// back, so it needs no fsync (what is left is of an earlier epoch).
    pub(super) fn begin(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.len = 0;
        self.next = 0;
        self.last = 0;
        self.oldest = None;
        if let Err(e) = self.file.set_len(0) {
            tracing::debug!("{}: cannot empty the journal: {e}", self.path.display());
        }
    }

    /// Makes everything redb was given durable with a durable commit, then
    /// begins the journal anew.
    pub(super) fn checkpoint(&mut self, db: &Database) -> Result<(), BackendError> {
        self.commit(db.begin_write().map_err(storage)?)
    }

    /// Applies the journal's records of the database's epoch to `db`, in
    /// one durable transaction (which stamps a new epoch), then begins the
    /// journal anew; with none to apply, begins it under the database's
    /// epoch without writing the database (a database never stamped is
    /// stamped). Returns how many records were applied.
    pub(super) fn replay(&mut self, db: &Database) -> Result<usize, BackendError> {
        let bytes = (self.file.read_all()).map_err(|e| journal_fault(&self.path, e))?;
        let durable = durable_epoch(db)?;
        let (records, whole) = decode(&bytes, durable);
        if whole < bytes.len() {
            tracing::info!(
                "{}: left {} bytes at the journal's end unapplied: an append that a crash \
                 cut off (never acknowledged), or groups an earlier durable commit holds",
                self.path.display(),
                bytes.len() - whole
            );
        }
        if let (true, Some(epoch)) = (records.is_empty(), durable) {
            self.begin(epoch);
            return Ok(0);
        }
        let txn = db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(RECORDS).map_err(storage)?;
            for writes in &records {
                for (key, value) in writes {
                    match value {
                        Some(value) => {
                            table.insert(*key, *value).map_err(storage)?;
                        }
                        None => {
                            table.remove(*key).map_err(storage)?;
                        }
                    }
                }
            }
        }
        self.commit(txn)?;
        Ok(records.len())
    }
}

/// The journal's file: in tests, one whose writes, fsyncs and cuts may
/// fail as a fault plan says.
struct JournalFile {
    file: File,
    #[cfg(test)]
    faults: Option<std::sync::Arc<crate::backend::fault::Faults>>,
}

impl JournalFile {
    /// The fault the next write, fsync or cut meets, if any.
    fn fault(&self) -> io::Result<()> {
        #[cfg(test)]
        if let Some(fault) = self.faults.as_ref().and_then(|f| f.next()) {
            return Err(crate::backend::fault::io_error(fault));
        }
        Ok(())
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.fault()?;
        self.file.write_all_at(bytes, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.fault()?;
        self.file.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fault()?;
        self.file.set_len(len)
    }

    /// The whole file.
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(0))?;
        self.file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// The epoch of the database's last durable commit, if one was stamped.
fn durable_epoch(db: &Database) -> Result<Option<u64>, BackendError> {
    let txn = db.begin_read().map_err(storage)?;
    let table = match txn.open_table(EPOCH) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(storage(e)),
    };
    Ok(table.get(EPOCH_KEY).map_err(storage)?.map(|v| v.value()))
}

/// One write as a record holds it: a key, and its value or `None` for a
/// removal.
type Replayed<'a> = (&'a [u8], Option<&'a [u8]>);

/// The records at the start of `bytes` of `epoch` that are whole, in
/// sequence and pass their CRC, each as its writes; and how many bytes
/// they take. None without an epoch: the database has never been
/// committed under a journal.
fn decode(bytes: &[u8], epoch: Option<u64>) -> (Vec<Vec<Replayed<'_>>>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    let Some(epoch) = epoch else {
        return (records, at);
    };
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let of = u64::from_le_bytes(header[4..12].try_into().expect("8 bytes"));
        let seq = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
        let expected = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if of != epoch || seq != records.len() as u64 || crc(&header[4..20], payload) != expected {
            break;
        }
        let Some(writes) = decode_writes(payload) else {
            // A record that passed its CRC yet does not parse was not
            // written by this code: stop as at any damage.
            break;
        };
        records.push(writes);
        at += HEADER + len;
    }
    (records, at)
}

fn decode_writes(mut payload: &[u8]) -> Option<Vec<Replayed<'_>>> {
    let mut writes = Vec::new();
    while !payload.is_empty() {
        let key = take_bytes(&mut payload)?;
        let (&kind, rest) = payload.split_first()?;
        payload = rest;
        let value = match kind {
            PUT => Some(take_bytes(&mut payload)?),
            REMOVE => None,
            _ => return None,
        };
        writes.push((key, value));
    }
    Some(writes)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| too_long())?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn take_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = input.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return None;
    }
    let (bytes, rest) = rest.split_at(len);
    *input = rest;
    Some(bytes)
}

fn crc(epoch_and_seq: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(epoch_and_seq);
    hasher.update(payload);
    hasher.finalize()
}

fn too_long() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a group of writes too large for one journal record (4 GiB)",
    )
}

/// An I/O error of the journal as a backend error, naming the file.
pub(super) fn journal_fault(path: &Path, e: io::Error) -> BackendError {
    let fault = crate::backend::StorageFault::of_io(&e);
    BackendError::WritesFailing {
        fault,
        source: std::sync::Arc::new(io::Error::new(
            e.kind(),
            format!("journal {}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests;
