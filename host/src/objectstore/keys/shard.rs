//! Shards, the unit a batch may touch: which one each record is in, which
//! ones a scan prefix spans, and their names in the backend.

use crate::backend::Shards;
use crate::encryption::{TAG_LEN, Tag};

use super::encode::push_partition;
use super::*;

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

impl RecordKey {
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
            | RecordKey::RateBucket(app)
            | RecordKey::NamePage { app, .. } => Shard::App(*app),
            RecordKey::Entry(id)
            | RecordKey::Expiry { entry: id, .. }
            | RecordKey::LegacyExpiry { entry: id, .. } => Shard::Partition(id.partition),
            RecordKey::IndexPage { partition, .. } | RecordKey::Counts { partition, .. } => {
                Shard::Partition(*partition)
            }
        }
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
            Prefix::Expiries | Prefix::LegacyExpiries => partitions_of(&[]),
            Prefix::Stores(app)
            | Prefix::Partitions { app, .. }
            | Prefix::Stats { app, .. }
            | Prefix::Usage(app)
            | Prefix::NamePages { app, .. } => ShardSpan::One(Shard::App(*app).encode()),
            Prefix::Counts(app) => partitions_of(&[app]),
            Prefix::StoreEntries { app, store }
            | Prefix::StoreIndex { app, store }
            | Prefix::StoreCounts { app, store } => partitions_of(&[app, store]),
            Prefix::PartitionEntries(id)
            | Prefix::PartitionIndex(id)
            | Prefix::PartitionCounts(id) => ShardSpan::One(Shard::Partition(*id).encode()),
        }
    }
}
