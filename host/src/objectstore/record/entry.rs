//! A key's record: its name, value and metadata.

use super::wire::{self, Reader, Writer};
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

    /// The entry as format 1 wrote it (fixed-width big-endian fields), for
    /// tests of data at rest from before the compact format.
    #[cfg(test)]
    pub(crate) fn encode_format_1(&self) -> Vec<u8> {
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

    /// Whether the key is still there at `now` (milliseconds).
    pub fn is_live_at(&self, now: u64) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

/// The flags byte of a compact entry: the value's kind in bits 0-1, the
/// TTL's kind in bits 2-3, whether it expires in bit 4.
const KIND_BITS: u8 = 0b11;
const TTL_SHIFT: u32 = 2;
const EXPIRES: u8 = 1 << 4;
const TTL_NEVER: u8 = 0;
const TTL_FIXED: u8 = 1;
const TTL_ROLLING: u8 = 2;

/// A signed difference folded so that small ones of either sign are small:
/// 0, -1, 1, -2, ... become 0, 1, 2, 3, ...
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// `to - from` as a varint-friendly number; `from` and the result give
/// `to` back for any two u64s (the difference wraps).
fn delta(from: u64, to: u64) -> u64 {
    zigzag(to.wrapping_sub(from) as i64)
}

fn undelta(from: u64, delta: u64) -> u64 {
    from.wrapping_add(unzigzag(delta) as u64)
}

/// Written in the compact format (`wire`): the flags byte, the name, the
/// creation time, then each later time as its difference from the one
/// before, the TTL's seconds unless it never expires, the version and the
/// value, each number a varint. A 10-byte name and a 100-byte value with a
/// TTL of an hour take 128 bytes, against 169 in format 1 (whose entries,
/// written before, are still read). Times are milliseconds since the epoch.
impl Record for EntryRecord {
    fn encode(&self) -> Vec<u8> {
        let (ttl_kind, ttl_secs) = match self.ttl {
            Ttl::Never => (TTL_NEVER, None),
            Ttl::Fixed(s) => (TTL_FIXED, Some(s)),
            Ttl::Rolling(s) => (TTL_ROLLING, Some(s)),
        };
        let expires = if self.expires.is_some() { EXPIRES } else { 0 };
        let mut w = Writer::compact();
        w.u8(self.kind as u8 | ttl_kind << TTL_SHIFT | expires)
            .var_bytes(self.key.as_bytes())
            .var(self.created)
            .var(delta(self.created, self.updated));
        if let Some(at) = self.expires {
            w.var(delta(self.updated, at));
        }
        if let Some(secs) = ttl_secs {
            w.var(secs);
        }
        w.var(self.version).var_bytes(&self.value);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        match bytes.first() {
            Some(&wire::COMPACT) => decode_compact(bytes),
            _ => decode_format_1(bytes),
        }
    }
}

fn decode_compact(bytes: &[u8]) -> Result<EntryRecord, Malformed> {
    let mut r = Reader::compact(bytes)?;
    let flags = r.u8()?;
    if flags & !(KIND_BITS | KIND_BITS << TTL_SHIFT | EXPIRES) != 0 {
        return Err(Malformed);
    }
    let kind = ValueKind::from_u8(flags & KIND_BITS).ok_or(Malformed)?;
    let key = r.var_string()?;
    let created = r.var()?;
    let updated = undelta(created, r.var()?);
    let expires = match flags & EXPIRES {
        0 => None,
        _ => Some(undelta(updated, r.var()?)),
    };
    let ttl = match (flags >> TTL_SHIFT) & KIND_BITS {
        TTL_NEVER => Ttl::Never,
        TTL_FIXED => Ttl::Fixed(r.var()?),
        TTL_ROLLING => Ttl::Rolling(r.var()?),
        _ => return Err(Malformed),
    };
    let version = r.var()?;
    let value = r.var_bytes()?.to_vec();
    r.finish()?;
    Ok(EntryRecord {
        key,
        created,
        updated,
        expires,
        version,
        ttl,
        kind,
        value,
    })
}

/// An entry as written before the compact format: fixed-width fields.
fn decode_format_1(bytes: &[u8]) -> Result<EntryRecord, Malformed> {
    let mut r = Reader::new(bytes)?;
    let record = EntryRecord {
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
