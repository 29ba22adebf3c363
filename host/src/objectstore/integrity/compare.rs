//! The checks made once every record is read: the expiry index both ways,
//! each partition's kept counts against a recount, and each partition's
//! index of names against the names of its entries.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::encryption::Tag;

use super::report::{DamageKind, Remedy};
use super::walk::{Counts, Walk};
use crate::objectstore::index::{self, Scope};
use crate::objectstore::keys::{PartitionId, RecordKey};
use crate::objectstore::usage::kept;

impl Walk<'_> {
    pub(super) fn compare_expiries(&mut self) {
        let mut missing: Vec<_> = self
            .expected_expiries
            .difference(&self.expiries)
            .copied()
            .collect();
        let mut stale: Vec<_> = self
            .expiries
            .difference(&self.expected_expiries)
            .copied()
            .collect();
        missing.sort();
        stale.sort();
        for (at, entry) in missing {
            let key = RecordKey::Expiry { at, entry }.encode();
            self.found(DamageKind::MissingExpiry, &key, Remedy::Rebuild);
        }
        for (at, entry) in stale {
            let key = RecordKey::Expiry { at, entry }.encode();
            self.found(DamageKind::StaleExpiry, &key, Remedy::Rebuild);
        }
    }

    /// Checks each partition's index of names: a whole tree, holding the
    /// names of the entries that open and no other. A partition with no
    /// page is not damaged if its index is not built yet (its first use
    /// builds it), but is if its counts' base says it is: it indexes none.
    pub(super) fn compare_indexes(&mut self) {
        let no_names = HashSet::new();
        let no_pages = HashMap::new();
        let unpaged = (self.counted_base.iter())
            .filter(|p| !self.index_pages.contains_key(p))
            .map(|p| (p, &no_pages));
        let mut broken = Vec::new();
        for (partition, pages) in self.index_pages.iter().chain(unpaged) {
            let entries = self.entry_names.get(partition).unwrap_or(&no_names);
            let names = if pages.is_empty() {
                Ok(Vec::new())
            } else {
                index::names_of(pages)
            };
            let kind = match names {
                Err(what) => DamageKind::IndexBroken(what),
                Ok(names) => {
                    let indexed: HashSet<&String> = names.iter().collect();
                    let missing = entries.iter().filter(|n| !indexed.contains(n)).count();
                    let extra = names.iter().filter(|n| !entries.contains(*n)).count();
                    if missing == 0 && extra == 0 {
                        continue;
                    }
                    DamageKind::IndexMismatch { missing, extra }
                }
            };
            broken.push((*partition, kind));
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
        for (partition, pages) in &self.index_pages {
            if pages.values().any(Option::is_none) && !self.rebuild_index.contains(partition) {
                self.rebuild_index.push(*partition);
            }
        }
    }

    /// Checks each index of store or partition names: a whole tree, holding
    /// the names of the store (or partition) records that open and no
    /// other. A scope without an index is not damaged: its first use builds
    /// one.
    pub(super) fn compare_name_indexes(&mut self) {
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
            let kind = match index::names_of(pages) {
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
