//! Reading keys: a backend key back into a [`RecordKey`], or `None` for
//! bytes that are no key of the layout (damage at rest, or a key set aside).

use crate::encryption::{TAG_LEN, Tag};

use super::*;

/// Reads fixed-size fields off the front of a key.
pub(super) struct Fields<'a>(pub(super) &'a [u8]);

impl Fields<'_> {
    pub(super) fn tag(&mut self) -> Option<Tag> {
        let (head, rest) = self.0.split_first_chunk::<TAG_LEN>()?;
        self.0 = rest;
        Some(*head)
    }

    fn byte(&mut self) -> Option<u8> {
        let (&head, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        let (head, rest) = self.0.split_first_chunk::<2>()?;
        self.0 = rest;
        Some(u16::from_be_bytes(*head))
    }

    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_be_bytes(*head))
    }

    pub(super) fn partition(&mut self) -> Option<PartitionId> {
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
                tick: f.u64()?,
                entry: f.entry()?,
            },
            LEGACY_EXPIRY => RecordKey::LegacyExpiry {
                at: f.u64()?,
                entry: f.entry()?,
            },
            USAGE => RecordKey::Usage {
                app: f.tag()?,
                store: f.tag()?,
            },
            COUNTS => RecordKey::Counts {
                partition: f.partition()?,
                slot: f.u16()?,
            },
            RATE_BUCKET => RecordKey::RateBucket(f.tag()?),
            CREDENTIAL => RecordKey::Credential(f.tag()?),
            INDEX_PAGE => RecordKey::IndexPage {
                partition: f.partition()?,
                page: f.u64()?,
            },
            NAME_PAGE => {
                let app = f.tag()?;
                let store = match f.byte()? {
                    NAMES_OF_STORES => None,
                    NAMES_OF_PARTITIONS => Some(f.tag()?),
                    _ => return None,
                };
                RecordKey::NamePage {
                    app,
                    store,
                    page: f.u64()?,
                }
            }
            _ => return None,
        };
        f.end(key)
    }
}
