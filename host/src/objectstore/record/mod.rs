//! The plaintext form of records, before sealing and after opening.
//!
//! A small hand-written binary encoding: values can be 10 MiB, so a text
//! format (which would base64 them) is out, and a decoder this short is easy
//! to check. Decoding never trusts a length: a record that does not parse is
//! reported like one that fails its integrity check.
//!
//! | file | records |
//! |---|---|
//! | `entry` | a key's record |
//! | `settings` | store and partition settings, a store being deleted |
//! | `counts` | kept counts, the older counters, statistics, the rate bucket |
//! | `page` | a page of an index of names |
//! | `app` | the master key's check, an application's keys, credentials |
//! | `wire` | the encoding they share |

mod app;
mod counts;
mod entry;
mod page;
mod settings;
mod wire;

pub(crate) use app::{AppRecord, CredentialRecord, MasterCheck};
pub(crate) use counts::{CountsRecord, RateLease, RateRecord, StatsRecord, UsageRecord};
pub(crate) use entry::EntryRecord;
pub(crate) use page::{IndexPage, PAGE_HEAD, bound_len, name_len_after, name_lens};
pub(crate) use settings::{PartitionRecord, StoreRecord, StoreTombstone};
pub(crate) use wire::var_len;

/// A record's plaintext form.
pub(crate) trait Record: Sized {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self, Malformed>;
}

/// A record did not parse.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

#[cfg(test)]
mod tests;
