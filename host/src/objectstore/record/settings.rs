//! The settings of stores and partitions, and the mark of a store being
//! deleted.

use super::wire::{Reader, Writer};
use super::{Malformed, Record};
use crate::objectstore::types::{StoreQuota, Ttl};

/// A store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreRecord {
    pub name: String,
    pub default_ttl: Ttl,
    pub quota: StoreQuota,
}

/// A store being deleted: what names it in logs, and when its deletion
/// began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreTombstone {
    pub name: String,
    pub since_ms: u64,
}

/// A partition's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionRecord {
    pub name: String,
    pub ttl: Option<Ttl>,
}

impl Record for StoreRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(self.name.as_bytes()).ttl(Some(self.default_ttl));
        w.limit(self.quota.max_keys).limit(self.quota.max_bytes);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let record = Self {
            name: r.string()?,
            default_ttl: r.ttl()?.ok_or(Malformed)?,
            quota: StoreQuota {
                max_keys: r.limit()?,
                max_bytes: r.limit()?,
            },
        };
        r.finish()?;
        Ok(record)
    }
}

impl Record for StoreTombstone {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(self.name.as_bytes()).u64(self.since_ms);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let record = Self {
            name: r.string()?,
            since_ms: r.u64()?,
        };
        r.finish()?;
        Ok(record)
    }
}

impl Record for PartitionRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(self.name.as_bytes()).ttl(self.ttl);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let record = Self {
            name: r.string()?,
            ttl: r.ttl()?,
        };
        r.finish()?;
        Ok(record)
    }
}
