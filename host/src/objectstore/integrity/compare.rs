//! The checks made once every record is read: the expiry index both ways,
//! each partition's kept counts against a recount, and each partition's
//! index of names against the names of its entries.
//!
//! The walk keeps digests of a partition's names and expiries, not the
//! names (see [`Digest`](super::walk::Digest)): where the digests agree
//! there is nothing to report, and where they differ these checks read
//! that partition again to say what differs. So a check of clean data
//! holds no per-key state, and one of damaged data holds the damaged
//! partitions' names only.

use std::collections::{BTreeSet, HashSet};

use crate::backend::{Backend, BackendError};
use crate::encryption::Tag;

use super::report::{DamageKind, Remedy};
use super::walk::{Counts, Digest, Scanned, Walk, open, scan_in_order};
use crate::objectstore::Error;
use crate::objectstore::index::{self, ReadPage, Scope};
use crate::objectstore::keys::{EntryId, PartitionId, Prefix, RecordKey, tick_of};
use crate::objectstore::record::{EntryRecord, IndexPage};
use crate::objectstore::usage::kept;

impl Walk<'_> {
    /// Compares the expiry index with the entries, both ways, in the
    /// partitions whose digests differ.
    pub(super) async fn compare_expiries(&mut self, backend: &dyn Backend) -> Result<(), Error> {
        let differing: BTreeSet<PartitionId> = (self.seen.iter())
            .filter(|(_, seen)| seen.expected_expiries != seen.expiries)
            .map(|(partition, _)| *partition)
            .collect();
        if differing.is_empty() {
            return Ok(());
        }
        // Either layout's entries stand for the key and tick they name (see
        // `RecordKey::expiring`). An entry is stale if that key does not
        // expire in that tick, or if an entry read before it (this
        // version's layout is read first) already stands for both. A stale
        // one is deleted in its own layout.
        let mut found = Vec::new();
        for prefix in [Prefix::Expiries, Prefix::LegacyExpiries] {
            let prefix = prefix.encode();
            let read = scan_in_order(backend, &prefix, |record| {
                if let Scanned::Record(key, _) = record
                    && let Some(index_key) = RecordKey::parse(key)
                    && let Some((tick, entry)) = index_key.expiring()
                    && differing.contains(&entry.partition)
                {
                    found.push((tick, entry, index_key));
                }
            });
            if let Err(what) = read.await? {
                self.found(DamageKind::Engine(what), b"", Remedy::None);
                return Ok(());
            }
        }
        let mut expected = HashSet::new();
        for partition in &differing {
            let read = self.each_entry(backend, *partition, |id, record| {
                if let Some(at) = record.expires {
                    expected.insert((tick_of(at), id));
                }
            });
            if let Err(what) = read.await? {
                self.found(DamageKind::Engine(what), b"", Remedy::None);
                return Ok(());
            }
        }
        let mut indexed = HashSet::new();
        let mut stale = Vec::new();
        for (tick, entry, key) in found {
            if !expected.contains(&(tick, entry)) || !indexed.insert((tick, entry)) {
                stale.push(key);
            }
        }
        let mut missing: Vec<_> = expected.difference(&indexed).copied().collect();
        missing.sort();
        stale.sort_by_key(RecordKey::encode);
        for &(tick, entry) in &missing {
            let key = RecordKey::Expiry { tick, entry }.encode();
            self.found(DamageKind::MissingExpiry, &key, Remedy::Rebuild);
        }
        for key in &stale {
            self.found(DamageKind::StaleExpiry, &key.encode(), Remedy::Rebuild);
        }
        self.missing_expiries = missing;
        self.stale_expiries = stale;
        Ok(())
    }

    /// Checks each partition's index of names: a whole tree, holding the
    /// names of the entries that open and no other. A partition with no
    /// page is not damaged if its index is not built yet (its first use
    /// builds it), but is if its counts' base says it is: it indexes none.
    pub(super) async fn compare_indexes(&mut self, backend: &dyn Backend) -> Result<(), Error> {
        let paged = (self.seen.iter())
            .filter(|(_, seen)| seen.pages > 0)
            .map(|(partition, _)| *partition);
        let partitions: BTreeSet<PartitionId> =
            paged.chain(self.counted_base.iter().copied()).collect();
        let mut broken = Vec::new();
        for partition in partitions {
            let (names, pages) = match self.seen.get(&partition) {
                Some(seen) => (seen.names, seen.pages),
                None => (Digest::default(), 0),
            };
            let kind = if pages == 0 {
                if names.count == 0 {
                    continue;
                }
                DamageKind::IndexMismatch {
                    missing: names.count,
                    extra: 0,
                }
            } else {
                let mut indexed = Digest::default();
                let shape = self
                    .read_index(backend, partition, |name| indexed.add(name.as_bytes()))
                    .await?;
                match shape {
                    Err(what) => DamageKind::IndexBroken(what),
                    Ok(()) if indexed == names => continue,
                    Ok(()) => match self.index_difference(backend, partition).await? {
                        Ok((missing, extra)) => DamageKind::IndexMismatch { missing, extra },
                        // Its entries cannot be read again: said so, and
                        // the index is left as it is.
                        Err(what) => {
                            self.found(DamageKind::Engine(what), b"", Remedy::None);
                            continue;
                        }
                    },
                }
            };
            broken.push((partition, kind));
        }
        for (partition, kind) in broken {
            let key = RecordKey::IndexPage {
                partition,
                page: index::ROOT,
            }
            .encode();
            self.found(kind, &key, Remedy::Rebuild);
            self.rebuild_index.push(partition);
        }
        // An unreadable page (reported as it was read) breaks its tree too.
        for (partition, seen) in &self.seen {
            if seen.unopened_pages && !self.rebuild_index.contains(partition) {
                self.rebuild_index.push(*partition);
            }
        }
        Ok(())
    }

    /// Walks the index of `partition`'s names from its root, reading it
    /// from `backend` an inner page's children at a time, and hands each
    /// name to `each`; `Ok(Err(_))` says how the tree is broken.
    async fn read_index(
        &self,
        backend: &dyn Backend,
        partition: PartitionId,
        each: impl FnMut(&str),
    ) -> Result<Result<(), String>, Error> {
        let found = self.seen.get(&partition).map_or(0, |seen| seen.pages);
        let Some(keys) = self.apps.get(&partition.app) else {
            return Ok(Err("its application is unknown".into()));
        };
        let scope = Scope::Keys(partition);
        let shard = scope.shard().encode();
        let read = async |ids: &[u64]| {
            let keys_read: Vec<Vec<u8>> = ids.iter().map(|id| scope.page_key(*id)).collect();
            let values = backend.get_many(&shard, &keys_read).await?;
            let pages: Vec<ReadPage> = (keys_read.iter().zip(values))
                .map(|(key, sealed)| sealed.map(|s| open::<IndexPage>(&keys.sealer, key, &s)))
                .collect();
            Ok::<_, BackendError>(pages)
        };
        match index::check_tree(found, read, each).await {
            Ok(shape) => Ok(shape),
            // A page the engine cannot read breaks the tree as one that
            // does not open does.
            Err(BackendError::Damaged(what)) => Ok(Err(what)),
            Err(e) => Err(e.into()),
        }
    }

    /// How many names of `partition`'s entries its (whole) index lacks,
    /// and how many it holds without an entry: the partition read again,
    /// its names held this time. `Ok(Err(_))`: its entries cannot be read
    /// again.
    async fn index_difference(
        &self,
        backend: &dyn Backend,
        partition: PartitionId,
    ) -> Result<Result<(usize, usize), String>, Error> {
        let mut indexed = HashSet::new();
        // Whole when it was read a moment ago (the check is offline).
        let _whole = self
            .read_index(backend, partition, |name| {
                indexed.insert(name.to_string());
            })
            .await?;
        let mut entries = HashSet::new();
        let read = self.each_entry(backend, partition, |_, record| {
            entries.insert(record.key);
        });
        if let Err(what) = read.await? {
            return Ok(Err(what));
        }
        let missing = entries.iter().filter(|n| !indexed.contains(*n)).count();
        let extra = indexed.iter().filter(|n| !entries.contains(*n)).count();
        Ok(Ok((missing, extra)))
    }

    /// Hands every entry of `partition` that opens to `each`, read again
    /// from `backend` (see [`scan_in_order`]).
    async fn each_entry(
        &self,
        backend: &dyn Backend,
        partition: PartitionId,
        mut each: impl FnMut(EntryId, EntryRecord),
    ) -> Result<Result<(), String>, Error> {
        let Some(keys) = self.apps.get(&partition.app) else {
            return Ok(Ok(()));
        };
        scan_in_order(backend, &partition.entries().encode(), |record| {
            if let Scanned::Record(key, sealed) = record
                && let Some(RecordKey::Entry(id)) = RecordKey::parse(key)
                && let Some(record) = open::<EntryRecord>(&keys.sealer, key, sealed)
            {
                each(id, record);
            }
        })
        .await
    }

    /// Checks each index of store or partition names: a whole tree, holding
    /// the names of the store (or partition) records that open and no
    /// other. A scope without an index is not damaged: its first use builds
    /// one.
    pub(super) async fn compare_name_indexes(&mut self) {
        let mut broken = Vec::new();
        for (scope, pages) in &self.name_pages {
            let records: HashSet<&String> = match *scope {
                Scope::Stores(app) => self
                    .store_names
                    .iter()
                    .filter(|((a, _), _)| *a == app)
                    .map(|(_, name)| name)
                    .collect(),
                Scope::Partitions { app, store } => self
                    .partition_names
                    .iter()
                    .filter(|(id, _)| id.app == app && id.store == store)
                    .map(|(_, name)| name)
                    .collect(),
                Scope::Keys(_) => unreachable!("a partition's index pages are of another kind"),
            };
            let kind = match index::names_of(pages).await {
                Err(what) => DamageKind::IndexBroken(what),
                Ok(names) => {
                    let indexed: HashSet<&String> = names.iter().collect();
                    let missing = records.difference(&indexed).count();
                    let extra = indexed.difference(&records).count();
                    if missing == 0 && extra == 0 {
                        // An unreadable page (reported as it was read)
                        // breaks its tree; `names_of` says so.
                        continue;
                    }
                    DamageKind::IndexMismatch { missing, extra }
                }
            };
            broken.push((*scope, kind));
        }
        for (scope, kind) in broken {
            self.found(kind, &scope.page_key(index::ROOT), Remedy::Rebuild);
            self.rebuild_names.push(scope);
        }
    }

    /// Every partition (in order) of an application with kept counts:
    /// those with data or with counts. An application without kept counts
    /// is not damaged: its first host counts its data.
    pub(super) fn counted_partitions(&self) -> Vec<PartitionId> {
        let counted_apps: HashSet<Tag> = self.counts.keys().map(|p| p.app).collect();
        let partitions: BTreeSet<PartitionId> = self
            .counted_all
            .keys()
            .chain(self.counts.keys())
            .copied()
            .filter(|p| counted_apps.contains(&p.app))
            .collect();
        partitions.into_iter().collect()
    }

    /// Compares each partition's kept counts with the recount.
    pub(super) fn compare_usage(&mut self) {
        for partition in self.counted_partitions() {
            let recounted = self
                .counted_all
                .get(&partition)
                .copied()
                .unwrap_or_default();
            let counted = match self.counts.get(&partition) {
                // Unreadable: already reported.
                Some(None) => continue,
                Some(Some(counts)) => *counts,
                None => Counts::default(),
            };
            if counted != recounted {
                let key = RecordKey::Counts {
                    partition,
                    slot: kept::BASE,
                }
                .encode();
                self.found(
                    DamageKind::UsageMismatch {
                        counted: (counted.keys, counted.bytes),
                        recounted: (recounted.keys, recounted.bytes),
                    },
                    &key,
                    Remedy::Rebuild,
                );
            }
        }
    }
}
