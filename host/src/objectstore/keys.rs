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
//! | usage | `u` app store | the keys and bytes of a store, as every host has added its changes | application |
//! | rate bucket | `r` app | the application's request-rate bucket and its recent leases | application |
//! | entry | `e` app store partition key | name, value, metadata | partition |
//! | expiry | `x` expires app store partition key | empty | partition |
//! | index page | `n` app store partition page | a page of the partition's ordered index of key names (see `index`) | partition |
//! | set aside | `q` original key | the original bytes, as found | `q` |
//!
//! Each name is replaced by its 16-byte tag (see
//! [`encryption`](crate::encryption)); `day` is big-endian days since the
//! epoch, `expires` big-endian milliseconds. The expiry index keeps the
//! expiry time in clear so the sweep finds due keys in order without opening
//! every record: it reveals when keys expire, never what they are.
//!
//! A record's *shard* is the unit a batch may touch: every batch the object
//! store commits writes records of one shard only, so that a backend which
//! spreads shards over machines can still apply a batch atomically. (A key
//! that parses as none of these, damage at rest, belongs to no shard; the
//! sweep and bulk deletion delete such keys in batches of their own.)

use crate::backend::Shards;
use crate::encryption::{TAG_LEN, Tag};

const MASTER_CHECK: &[u8] = b"m/master-check";
const APP: u8 = b'a';
const STORE: u8 = b's';
const PARTITION: u8 = b'p';
const STATS: u8 = b'c';
const ENTRY: u8 = b'e';
const EXPIRY: u8 = b'x';
const USAGE: u8 = b'u';
const RATE_BUCKET: u8 = b'r';
const CREDENTIAL: u8 = b'i';
const STORE_TOMBSTONE: u8 = b't';
const INDEX_PAGE: u8 = b'n';

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
    /// The expiry index: `entry` expires at `at` (milliseconds).
    Expiry { at: u64, entry: EntryId },
    /// A store's key and byte counts, shared by every host.
    Usage { app: Tag, store: Tag },
    /// An application's request-rate bucket, shared by every host.
    RateBucket(Tag),
    /// A client credential of the REST and Stats APIs, by its client id's
    /// tag. Host-wide, so that every host sharing the backend knows it.
    Credential(Tag),
    /// A page of a partition's ordered index of key names. Page ids are
    /// random (page 0 is the root), so they say nothing of where in the
    /// order a page's names fall.
    IndexPage { partition: PartitionId, page: u64 },
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

impl Shard {
    /// The shard's name in the backend: a kind byte, then the tags. Every
    /// name of a kind has one length, so a partition shard's name starts
    /// with its application's kind and tag only if it is one of its
    /// partitions.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 3 * TAG_LEN);
        match self {
            Shard::Host => out.push(SHARD_HOST),
            Shard::App(app) => {
                out.push(SHARD_APP);
                out.extend_from_slice(app);
            }
            Shard::Partition(id) => {
                out.push(SHARD_PARTITION);
                push_partition(&mut out, id);
            }
        }
        out
    }
}

const SHARD_HOST: u8 = b'h';
const SHARD_APP: u8 = b'a';
const SHARD_PARTITION: u8 = b'p';

/// The prefix of a scan: all records of one kind under one parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// Every application's record.
    Apps,
    /// The whole expiry index, in expiry order.
    Expiries,
    /// An application's stores.
    Stores(Tag),
    /// A store's partitions.
    Partitions { app: Tag, store: Tag },
    /// An application's request counts, or one store's.
    Stats { app: Tag, store: Option<Tag> },
    /// Every entry of an application.
    AppEntries(Tag),
    /// Every entry of one store.
    StoreEntries { app: Tag, store: Tag },
    /// Every entry of one partition.
    PartitionEntries(PartitionId),
    /// The key and byte counts of every store of an application.
    Usage(Tag),
    /// Every application's store tombstones (deletions not yet finished).
    StoreTombstones,
    /// Every client credential.
    Credentials,
    /// The index pages of one partition.
    PartitionIndex(PartitionId),
    /// The index pages of every partition of a store.
    StoreIndex { app: Tag, store: Tag },
}

/// Bytes of an entry's tags: app, store, partition, key.
const ENTRY_TAGS: usize = 4 * TAG_LEN;

fn push_partition(out: &mut Vec<u8>, id: &PartitionId) {
    out.extend_from_slice(&id.app);
    out.extend_from_slice(&id.store);
    out.extend_from_slice(&id.partition);
}

fn push_entry(out: &mut Vec<u8>, id: &EntryId) {
    push_partition(out, &id.partition);
    out.extend_from_slice(&id.key);
}

/// Reads fixed-size fields off the front of a key.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn tag(&mut self) -> Option<Tag> {
        let (head, rest) = self.0.split_first_chunk::<TAG_LEN>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }

    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_be_bytes(*head))
    }

    fn partition(&mut self) -> Option<PartitionId> {
        Some(PartitionId {
            app: self.tag()?,
            store: self.tag()?,
            partition: self.tag()?,
        })
    }

    fn entry(&mut self) -> Option<EntryId> {
        Some(EntryId {
            partition: self.partition()?,
            key: self.tag()?,
        })
    }

    /// `value` if nothing is left over.
    fn end<T>(self, value: T) -> Option<T> {
        self.0.is_empty().then_some(value)
    }
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
            RecordKey::Expiry { at, entry } => {
                out.push(EXPIRY);
                out.extend_from_slice(&at.to_be_bytes());
                push_entry(&mut out, entry);
            }
            RecordKey::Usage { app, store } => {
                out.push(USAGE);
                out.extend_from_slice(app);
                out.extend_from_slice(store);
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
        }
        out
    }

    /// Reads a backend key; `None` if it is no key of this layout.
    pub fn parse(bytes: &[u8]) -> Option<RecordKey> {
        if bytes == MASTER_CHECK {
            return Some(RecordKey::MasterCheck);
        }
        let (&kind, rest) = bytes.split_first()?;
        let mut f = Fields(rest);
        let key = match kind {
            APP => RecordKey::App(f.tag()?),
            STORE => RecordKey::Store {
                app: f.tag()?,
                store: f.tag()?,
            },
            STORE_TOMBSTONE => RecordKey::StoreTombstone {
                app: f.tag()?,
                store: f.tag()?,
            },
            PARTITION => RecordKey::Partition(f.partition()?),
            STATS => RecordKey::Stats {
                app: f.tag()?,
                store: f.tag()?,
                day: f.u32()?,
            },
            ENTRY => RecordKey::Entry(f.entry()?),
            EXPIRY => RecordKey::Expiry {
                at: f.u64()?,
                entry: f.entry()?,
            },
            USAGE => RecordKey::Usage {
                app: f.tag()?,
                store: f.tag()?,
            },
            RATE_BUCKET => RecordKey::RateBucket(f.tag()?),
            CREDENTIAL => RecordKey::Credential(f.tag()?),
            INDEX_PAGE => RecordKey::IndexPage {
                partition: f.partition()?,
                page: f.u64()?,
            },
            _ => return None,
        };
        f.end(key)
    }

    /// The shard the record belongs to.
    pub fn shard(&self) -> Shard {
        match self {
            RecordKey::MasterCheck => Shard::Host,
            RecordKey::Credential(_) => Shard::Host,
            RecordKey::App(app)
            | RecordKey::Store { app, .. }
            | RecordKey::StoreTombstone { app, .. }
            | RecordKey::Stats { app, .. }
            | RecordKey::Partition(PartitionId { app, .. })
            | RecordKey::Usage { app, .. }
            | RecordKey::RateBucket(app) => Shard::App(*app),
            RecordKey::Entry(id) | RecordKey::Expiry { entry: id, .. } => {
                Shard::Partition(id.partition)
            }
            RecordKey::IndexPage { partition, .. } => Shard::Partition(*partition),
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
            Prefix::AppEntries(app) => {
                out.push(ENTRY);
                [Some(app), None, None]
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
        };
        for tag in tags.into_iter().map_while(|t| t) {
            out.extend_from_slice(tag);
        }
        out
    }
}

/// Which shards hold a prefix's records: one shard, or every shard whose
/// name starts with `start` (see [`Prefix::shards`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShardSpan {
    One(Vec<u8>),
    StartingWith(Vec<u8>),
}

impl ShardSpan {
    pub fn as_shards(&self) -> Shards<'_> {
        match self {
            ShardSpan::One(name) => Shards::One(name),
            ShardSpan::StartingWith(start) => Shards::StartingWith(start),
        }
    }
}

impl Prefix {
    /// The shards that hold the prefix's records: the one shard of an
    /// application's stores, partitions or counts, or of a partition's
    /// entries; every partition of an application or store for their
    /// entries; every application, or every partition, for the scans that
    /// span them (listing applications, the expiry sweep).
    pub fn shards(&self) -> ShardSpan {
        let partitions_of = |tags: &[&Tag]| {
            let mut start = vec![SHARD_PARTITION];
            for tag in tags {
                start.extend_from_slice(*tag);
            }
            ShardSpan::StartingWith(start)
        };
        match self {
            Prefix::Apps | Prefix::StoreTombstones => ShardSpan::StartingWith(vec![SHARD_APP]),
            Prefix::Credentials => ShardSpan::One(Shard::Host.encode()),
            Prefix::Expiries => partitions_of(&[]),
            Prefix::Stores(app)
            | Prefix::Partitions { app, .. }
            | Prefix::Stats { app, .. }
            | Prefix::Usage(app) => ShardSpan::One(Shard::App(*app).encode()),
            Prefix::AppEntries(app) => partitions_of(&[app]),
            Prefix::StoreEntries { app, store } | Prefix::StoreIndex { app, store } => {
                partitions_of(&[app, store])
            }
            Prefix::PartitionEntries(id) | Prefix::PartitionIndex(id) => {
                ShardSpan::One(Shard::Partition(*id).encode())
            }
        }
    }
}

/// Records `ostore repair` set aside (see `integrity`): kept under their
/// original key behind this byte, where no prefix the object store scans
/// reaches them, in one shard of their own.
const QUARANTINE: u8 = b'q';

/// The shard and key under which a damaged record at `original` is set
/// aside.
pub(crate) fn quarantine(original: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (
        [QUARANTINE].to_vec(),
        [&[QUARANTINE][..], original].concat(),
    )
}

/// The original key of a record set aside, if `key` is one.
pub(crate) fn quarantined(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(&[QUARANTINE])
}

/// The shards a key that does not parse (damage at rest) may be in: the
/// one its leading bytes name, if they name one, and none (where the object
/// store writes such keys' deletions).
pub(crate) fn probable_shards(key: &[u8]) -> Vec<Vec<u8>> {
    let mut shards = Vec::new();
    if let Some((&kind, rest)) = key.split_first() {
        let mut f = Fields(rest);
        let shard = match kind {
            APP | STORE | PARTITION | STATS | USAGE | RATE_BUCKET => f.tag().map(Shard::App),
            ENTRY | INDEX_PAGE => f.partition().map(Shard::Partition),
            EXPIRY => f.u64().and_then(|_| f.partition()).map(Shard::Partition),
            CREDENTIAL => Some(Shard::Host),
            _ => None,
        };
        shards.extend(shard.map(|s| s.encode()));
    }
    shards.push(Vec::new());
    shards
}

impl PartitionId {
    /// The prefix of the partition's entries.
    pub fn entries(&self) -> Prefix {
        Prefix::PartitionEntries(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(n: u8) -> Tag {
        [n; TAG_LEN]
    }

    /// A partition and a key of it, with tags 1 to 4.
    fn ids() -> (PartitionId, EntryId) {
        let partition = PartitionId {
            app: tag(1),
            store: tag(2),
            partition: tag(3),
        };
        let entry = EntryId {
            partition,
            key: tag(4),
        };
        (partition, entry)
    }

    #[test]
    fn every_key_round_trips_and_starts_with_its_prefixes() {
        let (partition, entry) = ids();
        let keys = [
            RecordKey::MasterCheck,
            RecordKey::App(tag(1)),
            RecordKey::Store {
                app: tag(1),
                store: tag(2),
            },
            RecordKey::StoreTombstone {
                app: tag(1),
                store: tag(2),
            },
            RecordKey::Partition(partition),
            RecordKey::Stats {
                app: tag(1),
                store: tag(2),
                day: 20_000,
            },
            RecordKey::Entry(entry),
            RecordKey::Expiry { at: 7, entry },
            RecordKey::Credential(tag(5)),
            RecordKey::IndexPage { partition, page: 9 },
        ];
        for key in keys {
            let bytes = key.encode();
            assert_eq!(RecordKey::parse(&bytes), Some(key), "{key:?}");
            for cut in 1..bytes.len() {
                assert_eq!(
                    RecordKey::parse(&bytes[..cut]),
                    None,
                    "{key:?} cut at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(RecordKey::parse(&longer), None, "{key:?} with a byte more");
        }
        // The layout of the module doc, byte for byte: existing data stays
        // readable.
        assert_eq!(RecordKey::MasterCheck.encode(), b"m/master-check");
        let expiry = RecordKey::Expiry { at: 7, entry }.encode();
        assert_eq!(expiry.len(), 1 + 8 + 4 * TAG_LEN);
        assert_eq!(&expiry[..9], b"x\0\0\0\0\0\0\0\x07");
        assert_eq!(&expiry[9..], &RecordKey::Entry(entry).encode()[1..]);

        let entry_key = RecordKey::Entry(entry).encode();
        for prefix in [
            partition.entries(),
            Prefix::StoreEntries {
                app: tag(1),
                store: tag(2),
            },
            Prefix::AppEntries(tag(1)),
        ] {
            assert!(entry_key.starts_with(&prefix.encode()), "{prefix:?}");
        }
        let other_store = Prefix::StoreEntries {
            app: tag(1),
            store: tag(9),
        };
        assert!(!entry_key.starts_with(&other_store.encode()));
    }

    #[test]
    fn every_prefix_names_the_shards_of_its_records() {
        let (partition, entry) = ids();
        let in_span = |key: RecordKey, prefix: Prefix| {
            let shard = key.shard().encode();
            assert!(
                key.encode().starts_with(&prefix.encode()),
                "{key:?} {prefix:?}"
            );
            match prefix.shards() {
                ShardSpan::One(name) => assert_eq!(name, shard, "{key:?} {prefix:?}"),
                ShardSpan::StartingWith(start) => {
                    assert!(shard.starts_with(&start), "{key:?} {prefix:?}")
                }
            }
        };
        let store = RecordKey::Store {
            app: tag(1),
            store: tag(2),
        };
        in_span(RecordKey::App(tag(1)), Prefix::Apps);
        in_span(store, Prefix::Stores(tag(1)));
        let tombstone = RecordKey::StoreTombstone {
            app: tag(1),
            store: tag(2),
        };
        in_span(tombstone, Prefix::StoreTombstones);
        // A tombstone lives in the shard of the store record it replaces, so
        // that one batch swaps them.
        assert_eq!(tombstone.shard(), store.shard());
        in_span(
            RecordKey::Partition(partition),
            Prefix::Partitions {
                app: tag(1),
                store: tag(2),
            },
        );
        let stats = RecordKey::Stats {
            app: tag(1),
            store: tag(2),
            day: 3,
        };
        in_span(
            stats,
            Prefix::Stats {
                app: tag(1),
                store: None,
            },
        );
        in_span(RecordKey::Expiry { at: 5, entry }, Prefix::Expiries);
        let usage = RecordKey::Usage {
            app: tag(1),
            store: tag(2),
        };
        in_span(usage, Prefix::Usage(tag(1)));
        in_span(RecordKey::Entry(entry), Prefix::AppEntries(tag(1)));
        in_span(
            RecordKey::Entry(entry),
            Prefix::StoreEntries {
                app: tag(1),
                store: tag(2),
            },
        );
        in_span(RecordKey::Entry(entry), partition.entries());
        let page = RecordKey::IndexPage { partition, page: 3 };
        in_span(page, Prefix::PartitionIndex(partition));
        in_span(
            page,
            Prefix::StoreIndex {
                app: tag(1),
                store: tag(2),
            },
        );
        // A partition's index pages share its entries' shard, so that one
        // batch changes a key and the index together.
        assert_eq!(page.shard(), RecordKey::Entry(entry).shard());
        // Another application's partitions are not in its span.
        let ShardSpan::StartingWith(start) = Prefix::AppEntries(tag(9)).shards() else {
            panic!("entries of an application span its partitions")
        };
        assert!(!RecordKey::Entry(entry).shard().encode().starts_with(&start));
    }

    #[test]
    fn entries_and_their_expiries_share_the_partitions_shard() {
        let (partition, entry) = ids();
        assert_eq!(
            RecordKey::Entry(entry).shard(),
            RecordKey::Expiry { at: 1, entry }.shard()
        );
        assert_eq!(
            RecordKey::Partition(partition).shard(),
            RecordKey::App(tag(1)).shard()
        );
        assert_ne!(
            RecordKey::Entry(entry).shard(),
            RecordKey::App(tag(1)).shard()
        );
    }

    #[test]
    fn usage_and_rate_bucket_keys_round_trip_in_the_applications_shard() {
        let keys = [
            RecordKey::Usage {
                app: tag(1),
                store: tag(2),
            },
            RecordKey::RateBucket(tag(1)),
        ];
        for key in keys {
            let bytes = key.encode();
            assert_eq!(RecordKey::parse(&bytes), Some(key), "{key:?}");
            for cut in 1..bytes.len() {
                assert_eq!(
                    RecordKey::parse(&bytes[..cut]),
                    None,
                    "{key:?} cut at {cut}"
                );
            }
            assert_eq!(key.shard(), RecordKey::App(tag(1)).shard(), "{key:?}");
        }
        let usage = keys[0].encode();
        assert_eq!(usage.len(), 1 + 2 * TAG_LEN);
        assert!(usage.starts_with(&Prefix::Usage(tag(1)).encode()));
        assert!(!usage.starts_with(&Prefix::Usage(tag(9)).encode()));
        assert_eq!(keys[1].encode(), [&b"r"[..], &tag(1)].concat());
    }

    #[test]
    fn credentials_are_host_records_under_their_own_prefix() {
        let key = RecordKey::Credential(tag(5));
        assert_eq!(key.shard(), Shard::Host);
        assert_eq!(key.shard(), RecordKey::MasterCheck.shard());
        let bytes = key.encode();
        assert_eq!(bytes.len(), 1 + TAG_LEN);
        assert_eq!(bytes[0], b'i');
        assert!(bytes.starts_with(&Prefix::Credentials.encode()));
        // No other kind's keys fall under the credentials' prefix, so a
        // listing of credentials reads nothing else.
        let (partition, entry) = ids();
        for other in [
            RecordKey::MasterCheck,
            RecordKey::App(tag(1)),
            RecordKey::Partition(partition),
            RecordKey::Entry(entry),
            RecordKey::Expiry { at: 7, entry },
        ] {
            assert!(!other.encode().starts_with(&Prefix::Credentials.encode()));
        }
    }
}
