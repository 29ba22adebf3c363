//! The physical layout: every record's backend key is written and read here,
//! and nowhere else.
//!
//! | kind | backend key | record (sealed) | shard |
//! |---|---|---|---|
//! | master check | `m/master-check` | a known text, under the master key | the host |
//! | credential | `i` client | client id, what it grants, an HMAC of its secret, under the master key | the host |
//! | application | `a` app | name and data keys, under the master key | application |
//! | store | `s` app store | name, default TTL, quota | application |
//! | store tombstone | `t` app store | a store being deleted: its name, since when | application |
//! | partition | `p` app store partition | name and TTL | application |
//! | stats | `c` app store day | requests to a store on a day, its size then | application |
//! | legacy usage | `u` app store | a store's keys and bytes as counted before counts were kept per partition: read once by the first host of this version, then deleted | application |
//! | partition counts | `k` app store partition slot | keys and bytes the partition holds: slot 0 as measured when they were first kept, each other slot what the hosts writing in it changed since | partition |
//! | rate bucket | `r` app | the application's request-rate bucket and its recent leases | application |
//! | entry | `e` app store partition key | name, value, metadata | partition |
//! | expiry | `y` tick app store partition key | empty | partition |
//! | legacy expiry | `x` expires app store partition key | empty: written by versions before the expiry index was kept by the tick; read, swept and deleted, never written | partition |
//! | index page | `n` app store partition page | a page of the partition's ordered index of key names (see `index`) | partition |
//! | name page | `o` app `s` page, or `o` app `p` store page | a page of the ordered index of the application's store names (`s`), or of a store's partition names (`p`) | application |
//! | set aside | `q` original key | the original bytes, as found | `q` |
//!
//! Each name is replaced by its 16-byte tag (see
//! [`encryption`](crate::encryption)); `day` is big-endian days since the
//! epoch, `expires` big-endian milliseconds, and `tick` the big-endian
//! count of ticks of [`EXPIRY_TICK_MS`] (32 ms) since the epoch. The
//! expiry index keeps the tick a key expires in, in clear, so the sweep
//! finds due keys in order without opening every record: it reveals when
//! keys expire (to the tick), never what they are. Within a tick the entries sort by their tags, which are
//! random: keys written together land all over their tick's run of the
//! index instead of at its end, so the engine's pages fill as they do for
//! random inserts, and not to half, as appends at the end do; and a tick
//! is short, so that a group commit of many writes still changes few of
//! the index's pages (see docs/BENCHMARKS.md, "The expiry index by the
//! tick").
//!
//! A record's *shard* is the unit a batch may touch: every batch the object
//! store commits writes records of one shard only, so that a backend which
//! spreads shards over machines can still apply a batch atomically. (A key
//! that parses as none of these, damage at rest, belongs to no shard; the
//! sweep and bulk deletion delete such keys in batches of their own.)
//!
//! # Modules
//!
//! | module | holds |
//! |---|---|
//! | `encode` | writing a key or a scan prefix as backend bytes |
//! | `parse` | reading backend bytes back as a key, or `None` |
//! | `shard` | which shard a record or a prefix's records are in, and the shards' names |
//! | `quarantine` | keys that do not parse: where repair sets them aside, which shards they may be in |

use crate::encryption::{Sealer, Tag};

const MASTER_CHECK: &[u8] = b"m/master-check";
const APP: u8 = b'a';
const STORE: u8 = b's';
const PARTITION: u8 = b'p';
const STATS: u8 = b'c';
const ENTRY: u8 = b'e';
const EXPIRY: u8 = b'y';
const LEGACY_EXPIRY: u8 = b'x';
const USAGE: u8 = b'u';
const RATE_BUCKET: u8 = b'r';
const CREDENTIAL: u8 = b'i';
const STORE_TOMBSTONE: u8 = b't';
const INDEX_PAGE: u8 = b'n';
const COUNTS: u8 = b'k';
const NAME_PAGE: u8 = b'o';
/// After a name page's application tag: the index of its stores' names.
const NAMES_OF_STORES: u8 = b's';
/// After a name page's application tag: the index of one store's
/// partitions' names (the store's tag follows).
const NAMES_OF_PARTITIONS: u8 = b'p';

mod encode;
mod parse;
mod quarantine;
mod shard;

pub(crate) use quarantine::{probable_shards, quarantine, quarantined};
pub(crate) use shard::ShardSpan;

/// A partition, by the tags of its application, store and own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PartitionId {
    pub app: Tag,
    pub store: Tag,
    pub partition: Tag,
}

/// A key of a partition, by tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EntryId {
    pub partition: PartitionId,
    pub key: Tag,
}

/// Where a record lives: the key of every record the object store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordKey {
    /// Proves the master key matches the data.
    MasterCheck,
    /// An application's name and data keys.
    App(Tag),
    /// A store's settings.
    Store { app: Tag, store: Tag },
    /// A store whose deletion has begun and not yet finished: written in
    /// the batch that deletes the store's record, deleted once the store's
    /// partitions and keys are gone.
    StoreTombstone { app: Tag, store: Tag },
    /// A partition's settings.
    Partition(PartitionId),
    /// A store's request count on one day.
    Stats { app: Tag, store: Tag, day: u32 },
    /// A key with its value and metadata.
    Entry(EntryId),
    /// The expiry index: `entry` expires within `tick` (see
    /// [`RecordKey::expiry`]).
    Expiry { tick: u64, entry: EntryId },
    /// The expiry index as earlier versions wrote it: `entry` expires at
    /// `at` (milliseconds). Swept, checked and deleted like an
    /// [`Expiry`](RecordKey::Expiry) of `at`'s tick; never written.
    LegacyExpiry { at: u64, entry: EntryId },
    /// A store's key and byte counts as an earlier version kept them:
    /// only read (and deleted) when counts begin to be kept per partition.
    Usage { app: Tag, store: Tag },
    /// One slot of a partition's kept counts of keys and bytes (see
    /// `usage`): slot 0 is the base, measured; each host adds its changes in
    /// the slot it drew, in the batches that make them.
    Counts { partition: PartitionId, slot: u16 },
    /// An application's request-rate bucket, shared by every host.
    RateBucket(Tag),
    /// A client credential of the REST and Stats APIs, by its client id's
    /// tag. Host-wide, so that every host sharing the backend knows it.
    Credential(Tag),
    /// A page of a partition's ordered index of key names. Page ids are
    /// random (page 0 is the root), so they say nothing of where in the
    /// order a page's names fall.
    IndexPage { partition: PartitionId, page: u64 },
    /// A page of an ordered index of names kept in the application's shard:
    /// of its stores (`store: None`), or of one store's partitions. Page
    /// ids are random, as in a partition's index of key names.
    NamePage {
        app: Tag,
        store: Option<Tag>,
        page: u64,
    },
}

/// The unit of atomicity: one batch writes records of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Shard {
    /// Host-wide records.
    Host,
    /// An application's own records: its keys, stores, partitions, counts.
    App(Tag),
    /// A partition's keys and their expiry entries.
    Partition(PartitionId),
}

/// The prefix of a scan: all records of one kind under one parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// Every application's record.
    Apps,
    /// The whole expiry index, by the tick keys expire in.
    Expiries,
    /// The whole legacy expiry index, in expiry order.
    LegacyExpiries,
    /// An application's stores.
    Stores(Tag),
    /// A store's partitions.
    Partitions { app: Tag, store: Tag },
    /// An application's request counts, or one store's.
    Stats { app: Tag, store: Option<Tag> },
    /// Every entry of one store.
    StoreEntries { app: Tag, store: Tag },
    /// Every entry of one partition.
    PartitionEntries(PartitionId),
    /// The legacy key and byte counts of every store of an application.
    Usage(Tag),
    /// The kept counts of every partition of an application.
    Counts(Tag),
    /// The kept counts of every partition of a store.
    StoreCounts { app: Tag, store: Tag },
    /// The kept counts of one partition, every slot.
    PartitionCounts(PartitionId),
    /// Every application's store tombstones (deletions not yet finished).
    StoreTombstones,
    /// Every client credential.
    Credentials,
    /// The index pages of one partition.
    PartitionIndex(PartitionId),
    /// The index pages of every partition of a store.
    StoreIndex { app: Tag, store: Tag },
    /// The pages of the index of an application's store names (`store:
    /// None`), or of one store's partition names.
    NamePages { app: Tag, store: Option<Tag> },
}

/// The expiry index's unit of time, in milliseconds. A tick's entries are
/// in random order, so its length weighs two costs (docs/BENCHMARKS.md,
/// "The expiry index by the tick"): too short, and keys written one after
/// another append at the index's end, which leaves its pages half full; too
/// long, and each group commit's writes land on as many pages of the index
/// as there are writes, each a page redb writes again.
pub(crate) const EXPIRY_TICK_MS: u64 = 32;

/// The tick holding the instant `at` (milliseconds since the epoch).
pub(crate) fn tick_of(at: u64) -> u64 {
    at / EXPIRY_TICK_MS
}

/// When `tick` begins, in milliseconds since the epoch.
pub(crate) fn tick_start(tick: u64) -> u64 {
    tick.saturating_mul(EXPIRY_TICK_MS)
}

impl RecordKey {
    /// The expiry index entry of `entry`, which expires at `at`
    /// (milliseconds since the epoch).
    pub fn expiry(at: u64, entry: EntryId) -> RecordKey {
        RecordKey::Expiry {
            tick: tick_of(at),
            entry,
        }
    }

    /// Every expiry index entry `entry` may have if it expires at `at`:
    /// the one this version writes, and the one earlier versions wrote.
    /// Changing or deleting the entry deletes both.
    pub fn expiries(at: u64, entry: EntryId) -> [RecordKey; 2] {
        [
            RecordKey::expiry(at, entry),
            RecordKey::LegacyExpiry { at, entry },
        ]
    }

    /// For an expiry index entry of either layout, the tick its key
    /// expires in and the key.
    pub fn expiring(&self) -> Option<(u64, EntryId)> {
        match *self {
            RecordKey::Expiry { tick, entry } => Some((tick, entry)),
            RecordKey::LegacyExpiry { at, entry } => Some((tick_of(at), entry)),
            _ => None,
        }
    }
}

impl PartitionId {
    /// The prefix of the partition's entries.
    pub fn entries(&self) -> Prefix {
        Prefix::PartitionEntries(*self)
    }

    /// The entry of the key named `name`, under its application's `sealer`
    /// (the name is not checked).
    pub fn entry(&self, sealer: &Sealer, name: &str) -> EntryId {
        EntryId {
            partition: *self,
            key: sealer.tag(b"key", &self.partition, name.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests;
