//! Writing keys: each kind's byte, then its fixed-size fields, so that a
//! kind's keys sort by application, store, partition (and, in the expiry
//! index, by time first).

use crate::encryption::{TAG_LEN, Tag};

use super::*;

/// Bytes of an entry's tags: app, store, partition, key.
const ENTRY_TAGS: usize = 4 * TAG_LEN;

pub(super) fn push_partition(out: &mut Vec<u8>, id: &PartitionId) {
    out.extend_from_slice(&id.app);
    out.extend_from_slice(&id.store);
    out.extend_from_slice(&id.partition);
}

fn push_entry(out: &mut Vec<u8>, id: &EntryId) {
    push_partition(out, &id.partition);
    out.extend_from_slice(&id.key);
}

impl RecordKey {
    /// The key's bytes in the backend.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 8 + ENTRY_TAGS);
        match self {
            RecordKey::MasterCheck => out.extend_from_slice(MASTER_CHECK),
            RecordKey::App(app) => {
                out.push(APP);
                out.extend_from_slice(app);
            }
            RecordKey::Store { app, store } => {
                out.push(STORE);
                out.extend_from_slice(app);
                out.extend_from_slice(store);
            }
            RecordKey::StoreTombstone { app, store } => {
                out.push(STORE_TOMBSTONE);
                out.extend_from_slice(app);
                out.extend_from_slice(store);
            }
            RecordKey::Partition(id) => {
                out.push(PARTITION);
                push_partition(&mut out, id);
            }
            RecordKey::Stats { app, store, day } => {
                out.push(STATS);
                out.extend_from_slice(app);
                out.extend_from_slice(store);
                out.extend_from_slice(&day.to_be_bytes());
            }
            RecordKey::Entry(id) => {
                out.push(ENTRY);
                push_entry(&mut out, id);
            }
            RecordKey::Expiry { tick, entry } => {
                out.push(EXPIRY);
                out.extend_from_slice(&tick.to_be_bytes());
                push_entry(&mut out, entry);
            }
            RecordKey::LegacyExpiry { at, entry } => {
                out.push(LEGACY_EXPIRY);
                out.extend_from_slice(&at.to_be_bytes());
                push_entry(&mut out, entry);
            }
            RecordKey::Usage { app, store } => {
                out.push(USAGE);
                out.extend_from_slice(app);
                out.extend_from_slice(store);
            }
            RecordKey::Counts { partition, slot } => {
                out.push(COUNTS);
                push_partition(&mut out, partition);
                out.extend_from_slice(&slot.to_be_bytes());
            }
            RecordKey::RateBucket(app) => {
                out.push(RATE_BUCKET);
                out.extend_from_slice(app);
            }
            RecordKey::Credential(client) => {
                out.push(CREDENTIAL);
                out.extend_from_slice(client);
            }
            RecordKey::IndexPage { partition, page } => {
                out.push(INDEX_PAGE);
                push_partition(&mut out, partition);
                out.extend_from_slice(&page.to_be_bytes());
            }
            RecordKey::NamePage { app, store, page } => {
                push_names_scope(&mut out, app, store.as_ref());
                out.extend_from_slice(&page.to_be_bytes());
            }
        }
        out
    }
}

/// The start of a name page's key: the kind, the application, and which
/// names (its stores', or one store's partitions').
fn push_names_scope(out: &mut Vec<u8>, app: &Tag, store: Option<&Tag>) {
    out.push(NAME_PAGE);
    out.extend_from_slice(app);
    match store {
        None => out.push(NAMES_OF_STORES),
        Some(store) => {
            out.push(NAMES_OF_PARTITIONS);
            out.extend_from_slice(store);
        }
    }
}

impl Prefix {
    /// The bytes every key of the prefix starts with.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 3 * TAG_LEN);
        let tags: [Option<&Tag>; 3] = match self {
            Prefix::Apps => {
                out.push(APP);
                [None; 3]
            }
            Prefix::Expiries => {
                out.push(EXPIRY);
                [None; 3]
            }
            Prefix::LegacyExpiries => {
                out.push(LEGACY_EXPIRY);
                [None; 3]
            }
            Prefix::Stores(app) => {
                out.push(STORE);
                [Some(app), None, None]
            }
            Prefix::Partitions { app, store } => {
                out.push(PARTITION);
                [Some(app), Some(store), None]
            }
            Prefix::Stats { app, store } => {
                out.push(STATS);
                [Some(app), store.as_ref(), None]
            }
            Prefix::StoreEntries { app, store } => {
                out.push(ENTRY);
                [Some(app), Some(store), None]
            }
            Prefix::PartitionEntries(id) => {
                out.push(ENTRY);
                [Some(&id.app), Some(&id.store), Some(&id.partition)]
            }
            Prefix::Usage(app) => {
                out.push(USAGE);
                [Some(app), None, None]
            }
            Prefix::Counts(app) => {
                out.push(COUNTS);
                [Some(app), None, None]
            }
            Prefix::StoreCounts { app, store } => {
                out.push(COUNTS);
                [Some(app), Some(store), None]
            }
            Prefix::PartitionCounts(id) => {
                out.push(COUNTS);
                [Some(&id.app), Some(&id.store), Some(&id.partition)]
            }
            Prefix::Credentials => {
                out.push(CREDENTIAL);
                [None; 3]
            }
            Prefix::StoreTombstones => {
                out.push(STORE_TOMBSTONE);
                [None; 3]
            }
            Prefix::PartitionIndex(id) => {
                out.push(INDEX_PAGE);
                [Some(&id.app), Some(&id.store), Some(&id.partition)]
            }
            Prefix::StoreIndex { app, store } => {
                out.push(INDEX_PAGE);
                [Some(app), Some(store), None]
            }
            Prefix::NamePages { app, store } => {
                push_names_scope(&mut out, app, store.as_ref());
                [None; 3]
            }
        };
        for tag in tags.into_iter().map_while(|t| t) {
            out.extend_from_slice(tag);
        }
        out
    }
}
