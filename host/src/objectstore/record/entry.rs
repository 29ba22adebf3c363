//! A key's record: its name, value and metadata.

use super::wire::{Reader, Writer};
use super::{Malformed, Record};
use crate::objectstore::types::{Entry, Metadata, Ttl, ValueKind};

/// A stored key: its name, value and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryRecord {
    pub key: String,
    pub created: u64,
    pub updated: u64,
    /// Milliseconds since the epoch; `None` never expires.
    pub expires: Option<u64>,
    pub version: u64,
    /// The TTL the key was written with (needed to extend a rolling TTL).
    pub ttl: Ttl,
    pub kind: ValueKind,
    pub value: Vec<u8>,
}

impl EntryRecord {
    pub fn metadata(&self) -> Metadata {
        Metadata {
            created: self.created,
            updated: self.updated,
            expires: self.expires,
            ttl: self.ttl,
            version: self.version,
            size: self.value.len() as u64,
            kind: self.kind,
        }
    }

    pub fn into_entry(self) -> Entry {
        Entry {
            metadata: self.metadata(),
            key: self.key,
            value: self.value,
        }
    }

    /// Whether the key is still there at `now` (milliseconds).
    pub fn is_live_at(&self, now: u64) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

impl Record for EntryRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(self.key.as_bytes())
            .u64(self.created)
            .u64(self.updated)
            .u64(self.expires.map_or(0, |e| e.max(1)))
            .u64(self.version)
            .ttl(Some(self.ttl))
            .u8(self.kind as u8)
            .bytes(&self.value);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let record = Self {
            key: r.string()?,
            created: r.u64()?,
            updated: r.u64()?,
            expires: Some(r.u64()?).filter(|&e| e != 0),
            version: r.u64()?,
            ttl: r.ttl()?.ok_or(Malformed)?,
            kind: ValueKind::from_u8(r.u8()?).ok_or(Malformed)?,
            value: r.bytes()?.to_vec(),
        };
        r.finish()?;
        Ok(record)
    }
}
