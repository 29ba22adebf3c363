//! The plaintext form of records, before sealing and after opening.
//!
//! A small hand-written binary encoding: values can be 10 MiB, so a text
//! format (which would base64 them) is out, and a decoder this short is easy
//! to check. Decoding never trusts a length: a record that does not parse is
//! reported like one that fails its integrity check.

use super::types::{Entry, Metadata, StoreQuota, Ttl, ValueKind};

const FORMAT: u8 = 1;

/// A record's plaintext form.
pub(crate) trait Record: Sized {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self, Malformed>;
}

/// The record that proves the master key matches the data: a known text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MasterCheck;

const MASTER_CHECK_TEXT: &[u8] = b"ostore master key check v1";

impl Record for MasterCheck {
    fn encode(&self) -> Vec<u8> {
        MASTER_CHECK_TEXT.to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        if bytes == MASTER_CHECK_TEXT {
            Ok(MasterCheck)
        } else {
            Err(Malformed)
        }
    }
}

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

/// An application's identity and its data keys.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AppRecord {
    pub name: String,
    pub seal_key: [u8; 32],
    pub tag_key: [u8; 32],
}

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
        w.u64(self.keys as u64).u64(self.bytes as u64).u64(self.seq);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let record = Self {
            keys: r.u64()? as i64,
            bytes: r.u64()? as i64,
            seq: r.u64()?,
        };
        r.finish()?;
        Ok(record)
    }
}

/// A store's key and byte counts as an earlier version kept them, every
/// host adding its changes to them once a second; read once, when counts
/// begin to be kept per partition. Signed: a host may add the deletion of keys that another host has
/// created but not added yet, so a total may dip below zero for a moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UsageRecord {
    pub keys: i64,
    pub bytes: i64,
}

impl Record for UsageRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.keys as u64).u64(self.bytes as u64);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let record = Self {
            keys: r.u64()? as i64,
            bytes: r.u64()? as i64,
        };
        r.finish()?;
        Ok(record)
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

/// A page of a partition's ordered index of key names (see `index`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexPage {
    /// Names in ascending byte order, all within `[low, high)` (`None`: no
    /// bound). The bounds are the leaf's whole range in the tree, so that a
    /// reader who reached it through a parent read a moment earlier can tell
    /// whether the leaf still covers what it looks for.
    Leaf {
        low: Option<String>,
        high: Option<String>,
        names: Vec<String>,
    },
    /// Child `i` holds the names from `separators[i - 1]` (inclusive) to
    /// `separators[i]` (exclusive); there is one child more than separators.
    Inner {
        separators: Vec<String>,
        children: Vec<u64>,
    },
}

const LEAF: u8 = 1;
const INNER: u8 = 2;

impl Record for IndexPage {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            IndexPage::Leaf { low, high, names } => {
                w.u8(LEAF).name(low.as_deref()).name(high.as_deref());
                w.u64(names.len() as u64);
                for name in names {
                    w.bytes(name.as_bytes());
                }
            }
            IndexPage::Inner {
                separators,
                children,
            } => {
                w.u8(INNER).u64(separators.len() as u64);
                for separator in separators {
                    w.bytes(separator.as_bytes());
                }
                for child in children {
                    w.u64(*child);
                }
            }
        }
        w.0
    }

    /// Checks the order the tree relies on: a page whose names are out of
    /// order would send searches astray, so it is malformed like any other.
    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let ascending =
            |names: &[String]| names.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes());
        // Counts are not trusted for an allocation: each item read checks
        // that its bytes are there.
        let page = match r.u8()? {
            LEAF => {
                let low = r.name()?;
                let high = r.name()?;
                let count = r.u64()?;
                let mut names = Vec::new();
                for _ in 0..count {
                    names.push(r.string()?);
                }
                let in_range = |n: &String| {
                    low.as_ref().is_none_or(|l| l.as_bytes() <= n.as_bytes())
                        && high.as_ref().is_none_or(|h| n.as_bytes() < h.as_bytes())
                };
                if !ascending(&names) || !names.iter().all(in_range) {
                    return Err(Malformed);
                }
                IndexPage::Leaf { low, high, names }
            }
            INNER => {
                let count = r.u64()?;
                let mut separators = Vec::new();
                for _ in 0..count {
                    separators.push(r.string()?);
                }
                let mut children = Vec::new();
                for _ in 0..=count {
                    children.push(r.u64()?);
                }
                if !ascending(&separators) {
                    return Err(Malformed);
                }
                IndexPage::Inner {
                    separators,
                    children,
                }
            }
            _ => return Err(Malformed),
        };
        r.finish()?;
        Ok(page)
    }
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Self {
        Self(vec![FORMAT])
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    fn limit(&mut self, limit: Option<u64>) -> &mut Self {
        match limit {
            None => self.u8(0).u64(0),
            Some(n) => self.u8(1).u64(n),
        }
    }
    fn name(&mut self, name: Option<&str>) -> &mut Self {
        match name {
            None => self.u8(0),
            Some(n) => self.u8(1).bytes(n.as_bytes()),
        }
    }
    fn ttl(&mut self, ttl: Option<Ttl>) -> &mut Self {
        match ttl {
            None => self.u8(0).u64(0),
            Some(Ttl::Never) => self.u8(1).u64(0),
            Some(Ttl::Fixed(s)) => self.u8(2).u64(s),
            Some(Ttl::Rolling(s)) => self.u8(3).u64(s),
        }
    }
}

/// A record did not parse.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, Malformed> {
        match bytes.split_first() {
            Some((&FORMAT, rest)) => Ok(Self(rest)),
            _ => Err(Malformed),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = usize::try_from(self.u64()?).map_err(|_| Malformed)?;
        self.take(len)
    }
    fn string(&mut self) -> Result<String, Malformed> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Malformed)
    }
    fn key32(&mut self) -> Result<[u8; 32], Malformed> {
        Ok(self.take(32)?.try_into().expect("32 bytes"))
    }
    fn limit(&mut self) -> Result<Option<u64>, Malformed> {
        let set = self.u8()?;
        let n = self.u64()?;
        match set {
            0 => Ok(None),
            1 => Ok(Some(n)),
            _ => Err(Malformed),
        }
    }
    fn name(&mut self) -> Result<Option<String>, Malformed> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            _ => Err(Malformed),
        }
    }
    fn ttl(&mut self) -> Result<Option<Ttl>, Malformed> {
        let kind = self.u8()?;
        let secs = self.u64()?;
        Ok(match kind {
            0 => None,
            1 => Some(Ttl::Never),
            2 => Some(Ttl::Fixed(secs)),
            3 => Some(Ttl::Rolling(secs)),
            _ => return Err(Malformed),
        })
    }
    fn finish(self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed)
        }
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

impl Record for AppRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(self.name.as_bytes());
        w.0.extend_from_slice(&self.seal_key);
        w.0.extend_from_slice(&self.tag_key);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let record = Self {
            name: r.string()?,
            seal_key: r.key32()?,
            tag_key: r.key32()?,
        };
        r.finish()?;
        Ok(record)
    }
}

/// A client credential: its id (in clear only inside the seal) and what
/// the auth layer keeps of it, opaque here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialRecord {
    pub client_id: String,
    pub body: Vec<u8>,
}

impl Record for CredentialRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(self.client_id.as_bytes()).bytes(&self.body);
        w.0
    }

    fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes)?;
        let record = Self {
            client_id: r.string()?,
            body: r.bytes()?.to_vec(),
        };
        r.finish()?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncations_are_rejected() {
        let entry = EntryRecord {
            key: "k€y".into(),
            created: 1,
            updated: 2,
            expires: Some(3),
            version: 4,
            ttl: Ttl::Rolling(60),
            kind: ValueKind::String,
            value: b"value".to_vec(),
        };
        let bytes = entry.encode();
        assert_eq!(EntryRecord::decode(&bytes).unwrap(), entry);
        for cut in 0..bytes.len() {
            assert!(EntryRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let counts = CountsRecord {
            keys: -2,
            bytes: 7,
            seq: u64::MAX,
        };
        assert_eq!(CountsRecord::decode(&counts.encode()).unwrap(), counts);
        let part = PartitionRecord {
            name: "p".into(),
            ttl: None,
        };
        assert_eq!(PartitionRecord::decode(&part.encode()).unwrap(), part);
        let store = StoreRecord {
            name: "s".into(),
            default_ttl: Ttl::Fixed(9),
            quota: StoreQuota {
                max_keys: Some(0),
                max_bytes: None,
            },
        };
        assert_eq!(StoreRecord::decode(&store.encode()).unwrap(), store);
        let tombstone = StoreTombstone {
            name: "s".into(),
            since_ms: 1 << 41,
        };
        let bytes = tombstone.encode();
        assert_eq!(StoreTombstone::decode(&bytes).unwrap(), tombstone);
        for cut in 0..bytes.len() {
            assert!(
                StoreTombstone::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn usage_and_rate_records_round_trip_and_truncations_are_rejected() {
        let usage = UsageRecord {
            keys: -3,
            bytes: 1 << 40,
        };
        assert_eq!(UsageRecord::decode(&usage.encode()).unwrap(), usage);
        let rate = RateRecord {
            level_milli: 12_345,
            at_ms: 7,
            leases: vec![
                RateLease {
                    at_ms: 5,
                    tokens: 2,
                },
                RateLease {
                    at_ms: 6,
                    tokens: 1,
                },
            ],
        };
        let bytes = rate.encode();
        assert_eq!(RateRecord::decode(&bytes).unwrap(), rate);
        for cut in 0..bytes.len() {
            assert!(RateRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A lease count far beyond the bytes present is refused, not
        // allocated.
        let mut lying = RateRecord::default().encode();
        let count_at = lying.len() - 8;
        lying[count_at..].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(RateRecord::decode(&lying).is_err());
    }

    #[test]
    fn credential_records_round_trip_and_truncations_are_rejected() {
        let credential = CredentialRecord {
            client_id: "0123abcd".into(),
            body: b"{\"grant\":1}".to_vec(),
        };
        let bytes = credential.encode();
        assert_eq!(CredentialRecord::decode(&bytes).unwrap(), credential);
        for cut in 0..bytes.len() {
            assert!(
                CredentialRecord::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}
