//! Counting records: a partition's kept counts, the older per-store
//! counters, daily statistics and the request-rate bucket.

use super::wire::{Reader, Writer};
use super::{Malformed, Record};

/// Requests made to a store on one day, with its size when last counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StatsRecord {
    pub requests: u64,
    pub keys: u64,
    pub bytes: u64,
}

impl Record for StatsRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.requests).u64(self.keys).u64(self.bytes);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let record = Self {
            requests: r.u64()?,
            keys: r.u64()?,
            bytes: r.u64()?,
        };
        r.finish()?;
        Ok(record)
    }
}

/// One slot of a partition's kept counts (see `usage`). Signed: a slot
/// holds the changes of the writes made in it, and a slot whose writes
/// deleted keys counted in another is below zero. `seq` grows by one at
/// every write of the slot, so that a host that reads it knows which of
/// its own changes the read already holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CountsRecord {
    pub keys: i64,
    pub bytes: i64,
    pub seq: u64,
}

impl Record for CountsRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        signed_pair(&mut w, self.keys, self.bytes).u64(self.seq);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let (keys, bytes) = read_signed_pair(&mut r)?;
        let record = Self {
            keys,
            bytes,
            seq: r.u64()?,
        };
        r.finish()?;
        Ok(record)
    }
}

/// Keys and bytes, signed (two's complement in a u64 each), as both kinds
/// of counts begin.
fn signed_pair(w: &mut Writer, keys: i64, bytes: i64) -> &mut Writer {
    w.u64(keys as u64).u64(bytes as u64)
}

fn read_signed_pair(r: &mut Reader<'_>) -> Result<(i64, i64), Malformed> {
    Ok((r.u64()? as i64, r.u64()? as i64))
}

/// A store's key and byte counts as an earlier version kept them, every
/// host adding its changes to them once a second; read once, when counts
/// begin to be kept per partition. Signed: a host may add the deletion
/// of keys that another host has created but not added yet, so a total
/// may dip below zero for a moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UsageRecord {
    pub keys: i64,
    pub bytes: i64,
}

impl Record for UsageRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        signed_pair(&mut w, self.keys, self.bytes);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let (keys, bytes) = read_signed_pair(&mut r)?;
        r.finish()?;
        Ok(Self { keys, bytes })
    }
}

/// An application's request-rate bucket, shared by every host (see
/// `usage`): its level and the leases handed out recently.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RateRecord {
    /// Tokens in the bucket, in thousandths of a token.
    pub level_milli: u64,
    /// When the level was last brought up to date, in milliseconds.
    pub at_ms: u64,
    /// Leases that may still be in use, oldest first.
    pub leases: Vec<RateLease>,
}

/// Tokens a host took from the bucket at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLease {
    pub at_ms: u64,
    pub tokens: u64,
}

impl Record for RateRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.level_milli).u64(self.at_ms);
        w.u64(self.leases.len() as u64);
        for lease in &self.leases {
            w.u64(lease.at_ms).u64(lease.tokens);
        }
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let level_milli = r.u64()?;
        let at_ms = r.u64()?;
        // The count is not trusted for an allocation: each lease read
        // checks that its bytes are there.
        let count = r.u64()?;
        let mut leases = Vec::new();
        for _ in 0..count {
            leases.push(RateLease {
                at_ms: r.u64()?,
                tokens: r.u64()?,
            });
        }
        r.finish()?;
        Ok(Self {
            level_milli,
            at_ms,
            leases,
        })
    }
}
