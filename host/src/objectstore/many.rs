//! Several keys of one partition at once: `retrieve_many`, `store_many`
//! and `remove_many`.
//!
//! A batch write is the read-modify-write cycle of `write` over all its keys
//! together: under this host's locks for every key, read them all, decide
//! every new record, and commit one conditional batch holding every entry's
//! writes (each expecting the bytes it read), one change of the index of
//! names and one usage reservation for the summed change. So all land or
//! none, quotas judge the batch as a whole, and a concurrent writer (on any
//! host) makes the whole batch read again.
//!
//! A batch call is one request against the application's request rate and
//! in its statistics, as a page of a listing is: [`MAX_BATCH_KEYS`] (the
//! largest page) bounds the work one request may ask for.

use std::collections::HashSet;

use super::keys::EntryId;
use super::partition::{Partition, rolling_extension};
use super::record::EntryRecord;
use super::sealed::Commit;
use super::types::{Entry, Metadata, StoreOptions};
use super::write::{Damaged, EntryChange, Stored};
use super::{Error, MAX_CONFLICT_RETRIES};

/// The most keys one batch call takes: as many as the largest page of a
/// listing ([`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE)), so that one request
/// asks the host for no more work as a batch than as a page.
pub const MAX_BATCH_KEYS: usize = 1000;

/// The most bytes of keys and values one batch call moves: written by
/// `store_many`, or answered by `retrieve_many`. A batch is one backend
/// transaction (one script on Redis) built whole in memory, and its answer
/// is copied whole into the guest; 16 MiB keeps both prompt while leaving
/// room for one value of the default 10 MiB limit.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// One key's part in a batch write: what was read, and what replaces it
/// (`None`: the key goes).
struct KeyChange<'a> {
    entry: EntryId,
    name: &'a str,
    stored: Option<Stored>,
    next: Option<EntryRecord>,
}

/// Refuses a batch of more than [`MAX_BATCH_KEYS`] keys.
fn check_count(count: usize) -> Result<(), Error> {
    if count > MAX_BATCH_KEYS {
        return Err(Error::InvalidArgument(format!(
            "a batch takes at most {MAX_BATCH_KEYS} keys; this one has {count}"
        )));
    }
    Ok(())
}

/// The error for a batch that moves more than [`MAX_BATCH_BYTES`].
fn too_many_bytes(what: &str) -> Error {
    Error::InvalidArgument(format!(
        "{what} come to more than {MAX_BATCH_BYTES} bytes, the limit of one batch; \
         use fewer keys"
    ))
}

impl Partition {
    /// The entries of `keys` after checking each name, refusing a key given
    /// twice: what a batch would do with it is ambiguous (which value wins,
    /// whether the second `fail_if_present` sees the first), so the caller
    /// says it once.
    fn batch_entries<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<Vec<EntryId>, Error> {
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        for key in keys {
            let entry = self.entry_id(key)?;
            if !seen.insert(key) {
                return Err(Error::InvalidArgument(format!(
                    "key {key:?} appears more than once in the batch"
                )));
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Reads `keys`; for each, in order, its entry, or `None` if it is not
    /// there (or expired). Rolling TTLs are extended as
    /// [`retrieve`](Self::retrieve) extends them, in one write. The reads
    /// happen under this host's locks for the keys, so no write through
    /// this host lands between them: a batch write is seen whole or not at
    /// all.
    pub async fn retrieve_many(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, Error> {
        check_count(keys.len())?;
        self.admit().await?;
        let entries = self.batch_entries(keys.iter().map(String::as_str))?;
        let _guards = self.inner().key_locks.lock_many(&entries).await;
        let now = self.inner().now_ms();
        let mut found: Vec<Option<EntryRecord>> = Vec::with_capacity(keys.len());
        // The extensions of rolling TTLs, and where each answer goes.
        let (mut extensions, mut extended_at) = (Vec::new(), Vec::new());
        let mut bytes = 0usize;
        let loaded = self.load_many(&entries).await?;
        for ((entry, key), stored) in entries.into_iter().zip(keys).zip(loaded) {
            let record = match stored.as_ref() {
                None => None,
                Some(Stored { record: None, .. }) => return Err(Error::Integrity),
                Some(stored) => stored.live_record().cloned(),
            };
            if let Some(record) = &record {
                bytes += key.len() + record.value.len();
                if bytes > MAX_BATCH_BYTES {
                    return Err(too_many_bytes("the values found"));
                }
                if let Some(extended) = rolling_extension(record, now) {
                    extended_at.push(found.len());
                    extensions.push(KeyChange {
                        entry,
                        name: key,
                        stored,
                        next: Some(extended),
                    });
                }
            }
            found.push(record);
        }
        if !extensions.is_empty() {
            match self.commit_many(&extensions).await {
                Ok(Commit::Done) => {
                    for (at, change) in extended_at.into_iter().zip(extensions) {
                        found[at] = change.next;
                    }
                }
                // A concurrent write (on another host) changed a key; or the
                // store is at its byte quota, which must not make reads
                // fail. The reads stand; their TTLs are extended next time.
                Ok(Commit::Conflict) | Err(Error::QuotaExceeded(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found
            .into_iter()
            .map(|record| record.map(EntryRecord::into_entry))
            .collect())
    }

    /// Stores every `(key, value)` of `entries` with the same `options`, all
    /// or none; returns each key's new metadata, in order, once durable.
    /// With `fail_if_present`, one key that exists fails the whole batch
    /// with [`Error::KeyAlreadyExists`]; a quota the batch as a whole would
    /// exceed fails it with [`Error::QuotaExceeded`].
    pub async fn store_many(
        &self,
        entries: &[(String, Vec<u8>)],
        options: StoreOptions,
    ) -> Result<Vec<Metadata>, Error> {
        check_count(entries.len())?;
        let mut checked = Vec::with_capacity(entries.len());
        let mut bytes = 0usize;
        for (key, value) in entries {
            checked.push(self.checked_write(value, options)?);
            bytes += key.len() + value.len();
        }
        if bytes > MAX_BATCH_BYTES {
            return Err(too_many_bytes("the keys and values"));
        }
        let keys = entries.iter().map(|(key, _)| key.as_str());
        let change = |i: usize, previous: Option<&EntryRecord>, now| {
            if options.fail_if_present && previous.is_some() {
                return Err(Error::KeyAlreadyExists);
            }
            let (key, value) = &entries[i];
            let (ttl, kind) = checked[i];
            let record = self.next_record(key, previous, value.clone(), kind, ttl, now);
            let meta = record.metadata();
            Ok((Some(record), meta))
        };
        self.modify_many(keys, Damaged::Replace, change).await
    }

    /// Removes every key of `keys`, all in one write; says for each, in
    /// order, whether it was there. A key whose record fails its integrity
    /// check fails the batch, as [`remove`](Self::remove) fails.
    pub async fn remove_many(&self, keys: &[String]) -> Result<Vec<bool>, Error> {
        check_count(keys.len())?;
        let change = |_, previous: Option<&EntryRecord>, _| Ok((None, previous.is_some()));
        self.modify_many(keys.iter().map(String::as_str), Damaged::Refuse, change)
            .await
    }

    /// The read-modify-write cycle of a batch: like `modify`, over every
    /// key at once. `change` gets each key's index in `keys` and its live
    /// record, and decides its new record; one refusal fails the batch
    /// before anything is written.
    async fn modify_many<'k, T>(
        &self,
        keys: impl Iterator<Item = &'k str> + Clone,
        damaged: Damaged,
        mut change: impl FnMut(
            usize,
            Option<&EntryRecord>,
            u64,
        ) -> Result<(Option<EntryRecord>, T), Error>,
    ) -> Result<Vec<T>, Error> {
        self.admit().await?;
        let entries = self.batch_entries(keys.clone())?;
        self.store.refresh().await?;
        self.refresh().await?;
        let _guards = self.inner().key_locks.lock_many(&entries).await;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let mut changes = Vec::new();
            let mut out = Vec::with_capacity(entries.len());
            let loaded = self.load_many(&entries).await?;
            let each = entries.iter().zip(keys.clone()).zip(loaded);
            for (i, ((entry, name), stored)) in each.enumerate() {
                let was_damaged = stored.as_ref().is_some_and(|s| s.record.is_none());
                if damaged == Damaged::Refuse && was_damaged {
                    return Err(Error::Integrity);
                }
                let live = stored.as_ref().and_then(Stored::live_record);
                let (next, value) = change(i, live, self.inner().now_ms())?;
                out.push(value);
                // Deleting what is absent, or expired (the sweep reclaims
                // it), writes nothing.
                if next.is_none() && stored.as_ref().is_none_or(Stored::is_dead) {
                    continue;
                }
                changes.push(KeyChange {
                    entry: *entry,
                    name,
                    stored,
                    next,
                });
            }
            if changes.is_empty() {
                return Ok(out);
            }
            match self.commit_many(&changes).await? {
                Commit::Done => return Ok(out),
                // As in `modify`: let the writer that got there first finish.
                Commit::Conflict => tokio::task::yield_now().await,
            }
        }
        Err(Error::Contended("the keys are"))
    }

    /// Commits `changes` as one conditional batch: all land or none
    /// ([`commit_entries`](Partition::commit_entries)).
    async fn commit_many(&self, changes: &[KeyChange<'_>]) -> Result<Commit, Error> {
        let changes: Vec<EntryChange<'_>> = changes
            .iter()
            .map(|c| EntryChange {
                entry: c.entry,
                name: c.name,
                previous: c.stored.as_ref(),
                record: c.next.as_ref(),
            })
            .collect();
        self.commit_entries(&changes).await
    }
}
